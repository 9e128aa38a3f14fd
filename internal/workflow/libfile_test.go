package workflow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadLibraries(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		libs       []string // want these libraries, or
		err        string   // this error
	}{
		{"libraries only", "libraries:\n  - {name: a, command: ./a}\n  - {name: b, command: ./b}\n", []string{"a", "b"}, ""},
		{"empty list", "libraries: []\n", nil, `missing required field "libraries"`},
		{"no list", "name: x\n", nil, `missing required field "libraries"`},
		{"bad library", "libraries:\n  - {name: a}\n", nil, `missing required field "command"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "libs.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := LoadLibraries(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("LoadLibraries: got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadLibraries: got error %v, want none", err)
			}
			var got []string
			for _, l := range w.Libraries {
				got = append(got, l.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.libs, ",") {
				t.Errorf("LoadLibraries: got libraries %v, want %v", got, tc.libs)
			}
		})
	}
	// A workflow file still needs its tasks.
	if _, err := Parse("wf.yaml", "", []byte("libraries:\n  - {name: a, command: ./a}\n")); err == nil || !strings.Contains(err.Error(), `missing required field "tasks"`) {
		t.Errorf("Parse of a file with libraries only: got error %v, want missing tasks", err)
	}
}
