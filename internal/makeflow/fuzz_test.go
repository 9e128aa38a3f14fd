package makeflow

import (
	"errors"
	"testing"

	"trellis/internal/workflow"
)

// FuzzParse: no input makes Parse panic; it returns a workflow or an
// ErrorList whose every problem has a line, and tasks that wait only for
// earlier-checked, existing tasks.
func FuzzParse(f *testing.F) {
	f.Add(capitol)
	f.Add("A=1\nexport A\n.MAKEFLOW CATEGORY c\n.MAKEFLOW CORES 2\nx->y: a->b \\\n c\n\t@MEMORY=5\n\tLOCAL cat b c > y\n")
	f.Add("a: b\n\tcp b a\nb: a\n\tcp a b\n")
	f.Add("X=$(X)$(X)\n$(X):\n\t$(Y\n")
	f.Fuzz(func(t *testing.T, text string) {
		w, err := Parse("fuzz.mf", "/wf", []byte(text), nil)
		if err != nil {
			var list workflow.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse error %v is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Line == 0 && e.Msg != "too many errors" {
					t.Errorf("error without a line: %v", e)
				}
			}
			return
		}
		for i, task := range w.Tasks {
			if task.Command == "" || len(task.Outputs) == 0 {
				t.Errorf("task %d (%q): command %q, %d outputs; want a command and a target", i, task.Name, task.Command, len(task.Outputs))
			}
			for _, a := range task.After {
				if a < 0 || a >= len(w.Tasks) || a == i {
					t.Errorf("task %d waits for %d of %d tasks", i, a, len(w.Tasks))
				}
			}
		}
	})
}
