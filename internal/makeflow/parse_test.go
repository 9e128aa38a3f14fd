package makeflow

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/workflow"
)

// capitol is the example of the Makeflow manual, as the manual writes it.
const capitol = `# This is an example of Makeflow.
CURL=/usr/bin/curl
CONVERT=/usr/bin/convert
URL="http://ccl.cse.nd.edu/images/capitol.jpg"

capitol.anim.gif: capitol.jpg capitol.90.jpg capitol.180.jpg capitol.270.jpg capitol.360.jpg
	LOCAL $(CONVERT) -delay 10 -loop 0 capitol.jpg capitol.90.jpg capitol.180.jpg capitol.270.jpg capitol.360.jpg capitol.270.jpg capitol.180.jpg capitol.90.jpg capitol.anim.gif

capitol.90.jpg: capitol.jpg
	$(CONVERT) -swirl 90 capitol.jpg capitol.90.jpg

capitol.180.jpg: capitol.jpg
	$(CONVERT) -swirl 180 capitol.jpg capitol.180.jpg

capitol.270.jpg: capitol.jpg
	$(CONVERT) -swirl 270 capitol.jpg capitol.270.jpg

capitol.360.jpg: capitol.jpg
	$(CONVERT) -swirl 360 capitol.jpg capitol.360.jpg

capitol.jpg:
	LOCAL $(CURL) -o capitol.jpg $(URL)
`

func parse(t *testing.T, text string, env map[string]string) (*workflow.Workflow, error) {
	t.Helper()
	return Parse("test.mf", "/wf", []byte(text), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

// summary is what a test compares of a task: everything but the line.
type summary struct {
	Name, Command, Category string
	Inputs                  []string // REMOTE<-LOCAL@PRODUCER
	Outputs                 []string // REMOTE->LOCAL
	Env, Tags               []string
	After                   []int
	Cores                   float64
	Memory, Disk            int64
	GPUs                    int
}

func summarize(w *workflow.Workflow) []summary {
	var out []summary
	for _, t := range w.Tasks {
		s := summary{Name: t.Name, Command: t.Command, Category: t.Category, Env: t.Env, Tags: t.Tags,
			After: t.After, Cores: t.Cores, Memory: t.MemoryMB, Disk: t.DiskMB, GPUs: t.GPUs}
		for _, in := range t.Inputs {
			s.Inputs = append(s.Inputs, fmt.Sprintf("%s<-%s@%d", in.Name, in.Local, in.Producer))
		}
		for _, o := range t.Outputs {
			s.Outputs = append(s.Outputs, o.Name+"->"+o.Local)
		}
		out = append(out, s)
	}
	return out
}

func TestManualExample(t *testing.T) {
	w, err := parse(t, capitol, nil)
	if err != nil {
		t.Fatalf("Parse(capitol) error: %v", err)
	}
	if w.Name != "test" || w.Dir != "/wf" || len(w.Tasks) != 6 {
		t.Fatalf("Parse(capitol) = name %q dir %q %d tasks, want test /wf 6", w.Name, w.Dir, len(w.Tasks))
	}
	gif, download := w.Tasks[0], w.Tasks[5]
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5}, gif.After); diff != "" {
		t.Errorf("capitol.anim.gif waits for (-want +got):\n%s", diff)
	}
	if want := "/usr/bin/convert -delay 10 -loop 0 capitol.jpg capitol.90.jpg capitol.180.jpg capitol.270.jpg capitol.360.jpg capitol.270.jpg capitol.180.jpg capitol.90.jpg capitol.anim.gif"; gif.Command != want {
		t.Errorf("gif command = %q, want %q", gif.Command, want)
	}
	if want := `/usr/bin/curl -o capitol.jpg "http://ccl.cse.nd.edu/images/capitol.jpg"`; download.Command != want {
		t.Errorf("download command = %q, want %q", download.Command, want)
	}
	if diff := cmp.Diff([]string{"LOCAL"}, download.Tags); diff != "" {
		t.Errorf("download tags (-want +got):\n%s", diff)
	}
	for _, swirl := range w.Tasks[1:5] {
		if diff := cmp.Diff([]int{5}, swirl.After); diff != "" || swirl.Tags != nil {
			t.Errorf("%s: after %v tags %v, want [5] and no tags", swirl.Name, swirl.After, swirl.Tags)
		}
	}
}

func TestLanguage(t *testing.T) {
	const text = `# variables, export, categories, renaming, continuation
IN=data
export GREETING=hello
export FROM_ENV
LONG=one \
two

.MAKEFLOW CATEGORY small
.MAKEFLOW CORES 1
.MAKEFLOW MEMORY 100
a.txt: $(IN).txt->in.txt
	cat in.txt > a.txt

CATEGORY="big"
CORES=4
MEMORY=4000
DISK=2000
GPUS=1
b.out->b.txt out/c.txt->c.txt: a.txt \
   /abs/tool->tool
	@CORES=8
	@GREETING=hi
	./tool a.txt $(LONG) > b.txt && cp b.txt c.txt

.MAKEFLOW CATEGORY small
d.txt: b.out out/c.txt
	LOCAL cat b.out out/c.txt > d.txt # not a comment
`
	w, err := parse(t, text, map[string]string{"FROM_ENV": "env"})
	if err != nil {
		t.Fatalf("Parse error: %v", err)
	}
	env := []string{"FROM_ENV=env", "GREETING=hello"}
	want := []summary{
		{Name: "a.txt", Command: "cat in.txt > a.txt", Category: "small", Cores: 1, Memory: 100, Env: env,
			Inputs: []string{"in.txt<-/wf/data.txt@-1"}, Outputs: []string{"a.txt->/wf/a.txt"}},
		{Name: "b.out", Command: "./tool a.txt one  two > b.txt && cp b.txt c.txt", Category: "big",
			Cores: 8, Memory: 4000, Disk: 2000, GPUs: 1, Env: []string{"FROM_ENV=env", "GREETING=hi"}, After: []int{0},
			Inputs:  []string{"a.txt<-/wf/a.txt@0", "tool<-/abs/tool@-1"},
			Outputs: []string{"b.txt->/wf/b.out", "c.txt->/wf/out/c.txt"}},
		{Name: "d.txt", Command: "cat b.out out/c.txt > d.txt # not a comment", Category: "small", Cores: 1, Memory: 100,
			Env: env, Tags: []string{"LOCAL"}, After: []int{1},
			Inputs:  []string{"b.out<-/wf/b.out@1", "out/c.txt<-/wf/out/c.txt@1"},
			Outputs: []string{"d.txt->/wf/d.txt"}},
	}
	if diff := cmp.Diff(want, summarize(w)); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no command", "a: b\n\nc: d\n\tcp d c\n", `test.mf:1: rule "a" has no command: put its command on the next line, indented with a tab`},
		{"no command at end", "a: b\n", `test.mf:1: rule "a" has no command`},
		{"two commands", "a:\n\ttrue\n\tfalse\n", `test.mf:3: rule "a" (line 1) already has its command (line 2): a rule runs one command line; join the commands with && or ;`},
		{"command after a variable", "a:\n\ttrue\nX=1\n\tfalse\n", `test.mf:4: command "false" has no rule: write the rule TARGETS : SOURCES on the line above it`},
		{"undefined", "a:\n\techo $(NOPE)\n", `test.mf:2: undefined variable $(NOPE): define NOPE=value above this line or in the environment`},
		{"unterminated", "X=$(Y\n", `test.mf:1: unterminated $( in "$(Y": close it with )`},
		{"garbage", "just words\n", `test.mf:1: cannot read "just words": want a rule TARGETS : SOURCES`},
		{"no target", ": a\n\ttrue\n", `test.mf:1: rule has no target`},
		{"duplicate target", "a:\n\ttrue\n\nb a:\n\ttrue\n", `test.mf:4: target "a" is already a target of rule "a" (line 1)`},
		{"cycle", "a: b\n\tcp b a\nb: c\n\tcp c b\nc: a\n\tcp a c\n", `test.mf:1: rules form a cycle, each reading a target of the next: a (line 1) -> b (line 3) -> c (line 5) -> a`},
		{"self", "a: a\n\ttrue\n", `test.mf:1: rule "a" has "a" as both a source and a target`},
		{"absolute", "a: /etc/passwd\n\tcat passwd\n", `test.mf:1: source "/etc/passwd" is outside the task's sandbox: name it inside with /etc/passwd->passwd`},
		{"escape", "a: x->../y\n\ttrue\n", `test.mf:1: source "x->../y": the name after -> is a path in the task's sandbox: make it relative, such as y`},
		{"empty rename", "a->: x\n\ttrue\n", `test.mf:1: target "a->": want LOCAL->REMOTE with both names`},
		{"same sandbox name", "a: x->y z->y\n\ttrue\n", `test.mf:1: source "z->y": two sources of the rule have the name "y" in the sandbox`},
		{"cores", "CORES=many\n", `test.mf:1: CORES="many": want a number of cores, such as 2 or 0.5`},
		{"memory", ".MAKEFLOW MEMORY 1.5G\n", `test.mf:1: MEMORY="1.5G": want a whole number of megabytes, such as 1000`},
		{"directive", ".MAKEFLOW MODE x\n", `test.mf:1: .MAKEFLOW MODE is not supported by trellis: use CATEGORY, CORES, MEMORY, DISK or GPUS`},
		{"empty command", "a:\n\tLOCAL\n", `test.mf:2: rule "a" has an empty command`},
		{"empty after substitution", "E=\na:\n\t$(E)\n", `test.mf:3: rule "a" has an empty command once its variables are substituted: give them values`},
		{"bad scoped", "a:\n\t@CORES\n\ttrue\n", `test.mf:2: cannot read @CORES: want @NAME=value`},
		{"explosion", strings.Repeat("A=$(A)$(A)$(A)$(A)\n", 12) + "A=x\n" + strings.Repeat("A=$(A)$(A)$(A)$(A)\n", 12), `expanded text is over 1048576 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := parse(t, tc.text, nil)
			var list workflow.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse(%q) = %v, %v; want a workflow.ErrorList", tc.text, w, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) error:\n%v\nwant it to contain:\n%s", tc.text, err, tc.want)
			}
		})
	}
}

func TestManyErrorsAreCut(t *testing.T) {
	_, err := parse(t, strings.Repeat("junk\n", 50), nil)
	var list workflow.ErrorList
	if !errors.As(err, &list) || len(list) != maxErrors+1 || list[maxErrors].Msg != "too many errors" {
		t.Fatalf("Parse(50 bad lines) = %v; want %d errors then \"too many errors\"", err, maxErrors)
	}
}

// A generated file of 1,000 rules: 999 that each process one file, and
// one that gathers them all.
func TestThousandRules(t *testing.T) {
	var b strings.Builder
	var all []string
	for i := range 999 {
		fmt.Fprintf(&b, "part%d.txt: input.txt\n\tsed -n %dp input.txt > part%d.txt\n\n", i, i+1, i)
		all = append(all, fmt.Sprintf("part%d.txt", i))
	}
	fmt.Fprintf(&b, "all.txt: %s\n\tcat %s > all.txt\n", strings.Join(all, " "), strings.Join(all, " "))
	w, err := parse(t, b.String(), nil)
	if err != nil {
		t.Fatalf("Parse(1,000 rules) error: %v", err)
	}
	if len(w.Tasks) != 1000 {
		t.Fatalf("Parse(1,000 rules) = %d tasks, want 1000", len(w.Tasks))
	}
	last := w.Tasks[999]
	if len(last.After) != 999 || last.After[998] != 998 || len(last.Inputs) != 999 || last.Line != 2998 {
		t.Errorf("gathering rule: %d after, %d inputs, line %d; want 999, 999, 2998", len(last.After), len(last.Inputs), last.Line)
	}
}

// A target in a directory gets the directory made in the sandbox first,
// as it exists in Makeflow's working directory.
func TestTargetDirs(t *testing.T) {
	w, err := parse(t, "out/x.txt it's/y.txt z.txt out/deep/w.txt->w.txt: \n\techo hi > out/x.txt\n", nil)
	if err != nil {
		t.Fatalf("Parse error: %v", err)
	}
	want := "mkdir -p -- 'it'\\''s' 'out' || exit 1\necho hi > out/x.txt"
	if got := w.Tasks[0].Command; got != want {
		t.Errorf("command = %q, want %q", got, want)
	}
}

// The example in examples/makeflow reads as two splits, a count and a sort.
func TestExample(t *testing.T) {
	w, err := Load("../../examples/makeflow/wordcount.mf")
	if err != nil {
		t.Fatalf("Load(wordcount.mf) error: %v", err)
	}
	var got [][]int
	for _, task := range w.Tasks {
		got = append(got, task.After)
	}
	if diff := cmp.Diff([][]int{nil, nil, {0, 1}, {2}}, got); diff != "" || w.Name != "wordcount" {
		t.Errorf("Load(wordcount.mf) name %q, after (-want +got):\n%s", w.Name, diff)
	}
}
