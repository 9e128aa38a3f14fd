package workflow

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dataflowDir holds the example workflow with declared files that the
// docs point to.
const dataflowDir = "../../examples/dataflow"

func TestDataflowExample(t *testing.T) {
	w, err := Load(filepath.Join(dataflowDir, "dataflow.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	files := map[string]string{}
	for _, f := range w.Files {
		files[f.Name] = f.Kind.String()
	}
	wantFiles := map[string]string{
		"text": "local", "tools": "local", "toolbox": "unpack",
		"counts-1": "temp", "counts-2": "temp", "counts-3": "temp", "counts-4": "temp",
		"half-1": "temp", "half-2": "temp",
	}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files mismatch (-want +got):\n%s", diff)
	}
	after := map[string][]int{}
	for _, task := range w.Tasks {
		after[task.Name] = task.After
	}
	wantAfter := map[string][]int{
		"map-1": nil, "map-2": nil, "map-3": nil, "map-4": nil,
		"reduce-1": {0, 1}, "reduce-2": {2, 3}, "final": {4, 5},
	}
	if diff := cmp.Diff(wantAfter, after); diff != "" {
		t.Errorf("dependencies mismatch (-want +got):\n%s", diff)
	}
}

// TestDataflowArchive checks that tools.tar.gz holds what tools-src
// holds, so that the archive is not stale.
func TestDataflowArchive(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(dataflowDir, "tools.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, content := range untarGz(t, data) {
		got[name] = string(content)
	}
	want := map[string]string{}
	src := filepath.Join(dataflowDir, "tools-src")
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := os.ReadFile(path)
		rel, _ := filepath.Rel(src, path)
		want[filepath.ToSlash(rel)] = string(content)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tools.tar.gz differs from tools-src; rebuild it with: tar czf tools.tar.gz -C tools-src tools (-want +got):\n%s", diff)
	}
}

// TestDataflowRuns runs the example's commands the way workers would:
// one sandbox directory per task, declared local files copied in, the
// archive unpacked into a directory, and temp files passed from the
// task that writes them to the tasks that read them.
func TestDataflowRuns(t *testing.T) {
	for _, tool := range []string{"sh", "tr", "sort", "uniq", "awk", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	dir := t.TempDir()
	copyFile(t, filepath.Join(dataflowDir, "dataflow.yaml"), filepath.Join(dir, "dataflow", "dataflow.yaml"))
	copyFile(t, filepath.Join(dataflowDir, "tools.tar.gz"), filepath.Join(dir, "dataflow", "tools.tar.gz"))
	copyFile(t, filepath.Join(exampleDir, "input.txt"), filepath.Join(dir, "wordcount", "input.txt"))
	w, err := Load(filepath.Join(dir, "dataflow", "dataflow.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	decls := map[string]File{}
	for _, f := range w.Files {
		decls[f.Name] = f
	}
	temps := map[string][]byte{} // what the tasks wrote, by temp file
	// place puts declared file name at path in a sandbox.
	var place func(name, path string)
	place = func(name, path string) {
		f := decls[name]
		switch f.Kind {
		case Local:
			copyFile(t, f.Local, path)
		case Temp:
			data, ok := temps[name]
			if !ok {
				t.Fatalf("temp file %q is read before it is written", name)
			}
			writeFile(t, path, data)
		case Unpack:
			archive := filepath.Join(t.TempDir(), "archive")
			place(f.Unpack, archive)
			data, err := os.ReadFile(archive)
			if err != nil {
				t.Fatal(err)
			}
			if f.Format != "tar.gz" {
				t.Fatalf("file %q: format %q is not handled here", name, f.Format)
			}
			for rel, content := range untarGz(t, data) {
				writeFile(t, filepath.Join(path, rel), content)
			}
		default:
			t.Fatalf("file %q: kind %v is not handled here", name, f.Kind)
		}
	}
	for i, task := range w.Tasks { // file order is a valid order here
		for _, a := range task.After {
			if a >= i {
				t.Fatalf("task %q waits for a later task", task.Name)
			}
		}
		sandbox := t.TempDir()
		for _, in := range task.Inputs {
			switch {
			case in.File != "":
				place(in.File, filepath.Join(sandbox, in.Name))
			case in.Local != "":
				copyFile(t, in.Local, filepath.Join(sandbox, in.Name))
			default:
				writeFile(t, filepath.Join(sandbox, in.Name), in.Buffer)
			}
		}
		cmd := exec.Command("sh", "-c", task.Command)
		cmd.Dir = sandbox
		cmd.Env = append(os.Environ(), task.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("task %q: %v\n%s", task.Name, err, out)
		}
		for _, out := range task.Outputs {
			if out.File == "" {
				copyFile(t, filepath.Join(sandbox, out.Name), out.Local)
				continue
			}
			data, err := os.ReadFile(filepath.Join(sandbox, out.Name))
			if err != nil {
				t.Fatalf("task %q: %v", task.Name, err)
			}
			temps[out.File] = data
		}
	}
	for _, name := range []string{"counts-1", "counts-2", "counts-3", "counts-4"} {
		if n := bytes.Count(temps[name], []byte("\n")); n < 100 {
			t.Errorf("temp file %q has %d lines, want a quarter's counts", name, n)
		}
	}
	result, err := os.ReadFile(filepath.Join(dir, "dataflow", "out", "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"words: 2560", "distinct words: 290", "most common:",
		"  328 the", "  148 and", "  68 a", "  68 she", "  68 to",
		"  52 of", "  44 was", "  40 in", "  32 her", "  28 on",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, string(result)); diff != "" {
		t.Errorf("result.txt mismatch (-want +got):\n%s", diff)
	}
}

// untarGz returns the regular files of a tar.gz archive by path.
func untarGz(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			t.Fatalf("archive member %q leaves the directory", h.Name)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.ToSlash(name)] = content
	}
}

// writeFile writes data to path, creating path's directory.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
