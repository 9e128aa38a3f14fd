package internal_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list args...` and returns its output lines, skipping the
// test when the go tool is not on PATH.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	cmd := exec.Command(goTool, append([]string{"list"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// within reports whether pkg is dir or a package below it.
func within(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// TestCoreImportsOnlyStandardLibrary: the core is a pure state machine
// (STYLE.md rules 1 and 14), so everything it depends on, outside itself,
// is in the standard library.
func TestCoreImportsOnlyStandardLibrary(t *testing.T) {
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "trellis/internal/core")
	if len(deps) == 0 {
		t.Fatalf("go list -deps trellis/internal/core listed nothing; want at least trellis/internal/core")
	}
	for _, dep := range deps {
		if !within(dep, "trellis/internal/core") {
			t.Errorf("trellis/internal/core depends on %s; want the standard library only", dep)
		}
	}
}

// TestWorkerDoesNotImportManagerOrCore: workers talk to the manager through
// the protocol only (STYLE.md, layout).
func TestWorkerDoesNotImportManagerOrCore(t *testing.T) {
	// -e: a package that does not build yet still lists its imports.
	lines := goList(t, "-e", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "trellis/internal/worker/...")
	if len(lines) == 0 {
		t.Skip("no packages match trellis/internal/worker/...")
	}
	forbidden := []string{"trellis/internal/manager", "trellis/internal/core"}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		for _, dep := range deps {
			for _, f := range forbidden {
				if within(dep, f) {
					t.Errorf("%s depends on %s; worker packages must not depend on %s", pkg, dep, f)
				}
			}
		}
	}
}

// TestClientIsOnlyAClient: package trellis is the client (issue #9); the
// embedded cluster is package trellis/local. A program that only dials a
// manager links neither the manager, nor the core, nor any worker part.
func TestClientIsOnlyAClient(t *testing.T) {
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "trellis")
	if len(deps) == 0 {
		t.Fatalf("go list -deps trellis listed nothing; want at least trellis")
	}
	forbidden := []string{"trellis/internal/manager", "trellis/internal/worker", "trellis/internal/core", "trellis/local"}
	for _, dep := range deps {
		for _, f := range forbidden {
			if within(dep, f) {
				t.Errorf("package trellis depends on %s; the client must not depend on %s (the embedded cluster belongs in trellis/local)", dep, f)
			}
		}
	}
}
