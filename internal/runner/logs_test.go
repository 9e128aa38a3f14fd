package runner

import "testing"

func TestFileName(t *testing.T) {
	for name, want := range map[string]string{
		"chatty":         "chatty",
		"lib.fn":         "lib.fn",
		"out/a.txt":      "out_a.txt",
		"..":             "_",
		"rule 3: x > y":  "rule_3__x___y",
		"répertoire-été": "r__pertoire-__t__",
	} {
		if got := fileName(name); got != want {
			t.Errorf("fileName(%q) = %q, want %q", name, got, want)
		}
	}
}
