package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A Makeflow file runs unchanged through `trellis run` with an embedded
// cluster: a chain (sort, then upper-case) and a fan-in (the gathering
// rule reads both branches), with renaming, an exported variable, a
// category, a target in a directory and a LOCAL rule. Every target comes
// back to the client.
func TestRunMakeflow(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "input.txt"), "pear\napple\nfig\n")
	writeFile(t, filepath.Join(dir, "flow.mf"), `# a chain and a fan-in
export SUFFIX=done
SORT=sort
.MAKEFLOW CATEGORY small
.MAKEFLOW CORES 1

sorted.txt: input.txt
	$(SORT) input.txt > sorted.txt

upper.txt: sorted.txt
	tr a-z A-Z < sorted.txt > upper.txt

stats/count.txt: input.txt->in
	@CORES=2
	wc -l < in | tr -d ' ' > stats/count.txt

out/all.txt->all: upper.txt \
    stats/count.txt
	LOCAL cat upper.txt stats/count.txt > all && echo "$SUFFIX" >> all
`)
	code, out := runTrellis(t, "run", "--check", filepath.Join(dir, "flow.mf"))
	if want := filepath.Join(dir, "flow.mf") + ": ok: 4 tasks\n"; code != 0 || out != want {
		t.Errorf("run --check: exit %d, output %q; want 0 and %q", code, out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "sorted.txt")); err == nil {
		t.Errorf("run --check made sorted.txt: it must not run anything")
	}
	code, out = runTrellis(t, "run", "--quiet", "--local-workers", "2", "--local-cores", "2", filepath.Join(dir, "flow.mf"))
	if code != 0 || !strings.Contains(out, "workflow flow succeeded: 4 tasks, 4 succeeded") {
		t.Fatalf("run flow.mf: exit %d, output:\n%s\nwant exit 0 and 4 succeeded", code, out)
	}
	for path, want := range map[string]string{
		"sorted.txt":      "apple\nfig\npear\n",
		"upper.txt":       "APPLE\nFIG\nPEAR\n",
		"stats/count.txt": "3\n",
		"out/all.txt":     "APPLE\nFIG\nPEAR\n3\ndone\n",
	} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
}

// A failing rule is reported at its line, and the rules that read its
// targets are skipped; a malformed file is refused with file:line.
func TestRunMakeflowFailures(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fail.mf"), "a.txt:\n\techo broken >&2; exit 3\n\nb.txt: a.txt\n\tcp a.txt b.txt\n")
	code, out := runTrellis(t, "run", "--quiet", filepath.Join(dir, "fail.mf"))
	for _, want := range []string{
		"FAILED  a.txt (line 1", "exit status 3", "broken",
		`SKIPPED b.txt (line 4): it depends on "a.txt", which did not succeed`,
		"workflow fail FAILED: 2 tasks, 0 succeeded, 1 failed, 1 skipped",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("run fail.mf: exit %d, output lacks %q; want exit 1 and it", code, want)
		}
	}
	writeFile(t, filepath.Join(dir, "bad.makeflow"), "X=1\n\nout.txt: $(Y)\n\ttrue\n")
	for _, args := range [][]string{{"run", "--check"}, {"run", "--quiet"}} {
		code, out = runTrellis(t, append(args, filepath.Join(dir, "bad.makeflow"))...)
		want := "bad.makeflow:3: undefined variable $(Y): define Y=value above this line or in the environment"
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("trellis %v bad.makeflow: exit %d, output:\n%s\nwant exit 1 and %q", args, code, out, want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// A generated Makeflow of 1,000 rules: 999 each take one line of the
// input, and one gathers them all back, byte for byte.
func TestRunMakeflowThousandRules(t *testing.T) {
	dir := t.TempDir()
	var input, flow strings.Builder
	var parts []string
	for i := range 999 {
		fmt.Fprintf(&input, "line %d\n", i)
		fmt.Fprintf(&flow, "part%d.txt: input.txt\n\tsed -n %dp input.txt > part%d.txt\n\n", i, i+1, i)
		parts = append(parts, fmt.Sprintf("part%d.txt", i))
	}
	fmt.Fprintf(&flow, "all.txt: %s\n\tcat %s > all.txt\n", strings.Join(parts, " "), strings.Join(parts, " "))
	writeFile(t, filepath.Join(dir, "input.txt"), input.String())
	writeFile(t, filepath.Join(dir, "big.makeflow"), flow.String())
	code, out := runTrellis(t, "run", "--quiet", filepath.Join(dir, "big.makeflow"))
	if code != 0 || !strings.Contains(out, "workflow big succeeded: 1000 tasks, 1000 succeeded") {
		t.Fatalf("run big.makeflow: exit %d, output ends:\n%s\nwant exit 0 and 1000 succeeded", code, out[max(0, len(out)-2000):])
	}
	if got, err := os.ReadFile(filepath.Join(dir, "all.txt")); err != nil || string(got) != input.String() {
		t.Errorf("all.txt = %d bytes, %v; want the %d bytes of input.txt", len(got), err, input.Len())
	}
}
