package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"trellis/internal/workflow"
)

// WriteLogs writes the stdout and stderr tails of every task and call that
// ran to dir, as NAME.stdout and NAME.stderr (NAME made safe for a file
// name; a NAME that repeats gets ~LINE). It makes dir if it is missing.
// What never ran (skipped, or never submitted) has no files.
func WriteLogs(dir string, wf *workflow.Workflow, s *Summary) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--logs: %w", err)
	}
	js := jobs(wf)
	seen := make(map[string]bool, len(js))
	for i, r := range s.Results {
		if r == nil || r.Worker == "" {
			continue
		}
		base := fileName(js[i].name)
		if seen[base] {
			base = fmt.Sprintf("%s~%d", base, js[i].line)
		}
		seen[base] = true
		for _, f := range []struct {
			ext  string
			data []byte
		}{{".stdout", r.Stdout}, {".stderr", r.Stderr}} {
			if err := os.WriteFile(filepath.Join(dir, base+f.ext), f.data, 0o644); err != nil {
				return fmt.Errorf("--logs: %w", err)
			}
		}
	}
	return nil
}

// fileName keeps letters, digits, '.', '-' and '_' of name and turns the
// rest into '_'; a name of dots only becomes '_' too.
func fileName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if strings.Trim(string(b), ".") == "" {
		return "_"
	}
	return string(b)
}
