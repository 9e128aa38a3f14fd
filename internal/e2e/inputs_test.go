package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
)

// tamper appends to the file at path in the sandbox: as root it simply
// writes through the read-only mode; as another user it first makes the
// file writable, as a task run as the worker's own user may.
func tamper(path string) string {
	return fmt.Sprintf("printf tampered >> %[1]s 2>/dev/null || { chmod u+w %[1]s && printf tampered >> %[1]s; }", path)
}

// numbers is what `seq 1 n` prints.
func numbers(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// readTree summarises the files below dir by relative path (see summary).
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = summary(string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A task that changes an input the worker linked from its cache (a file
// from the client, a temp file another task made, a directory) changes
// nothing that later tasks read: on a worker with one core, ten tasks run
// after it on the same worker all get the original bytes.
func TestInputsImmutable(t *testing.T) {
	c := newCluster(t)
	c.worker("w", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	dir := t.TempDir()
	// Over 64 KiB, so that it is staged in the cache rather than carried
	// inside the task's message.
	original := numbers(20000)
	local := filepath.Join(dir, "numbers.txt")
	writeFile(t, local, original)
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "a.txt"), "alpha\n")
	writeFile(t, filepath.Join(tree, "sub", "b.txt"), original)

	run := func(t *testing.T, tasks ...*trellis.Task) {
		t.Helper()
		hs, err := cl.Submit(context.Background(), tasks...)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if r := waitResult(t, h, time.Minute); !r.OK() {
				t.Fatalf("task %s: %v: %s", h.Name, r.Err(), r.Stderr)
			}
		}
	}
	cases := []struct {
		name   string
		input  func(t *testing.T) *trellis.File // declared, and made if a task makes it
		tamper string                           // the command that changes it at "in"
		read   string                           // a command that copies "in" to "out"
		want   func(t *testing.T, out string)   // checks what a reader copied
		// recreated is the tasks run again to remake lost files, so far.
		recreated int
	}{
		{
			name:   "file from the client",
			input:  func(t *testing.T) *trellis.File { return trellis.LocalFile(local) },
			tamper: tamper("in"),
			read:   "cat in > out",
			want:   func(t *testing.T, out string) { checkBytes(t, out, original) },
		},
		{
			name: "temp file",
			input: func(t *testing.T) *trellis.File {
				f := trellis.Temp()
				run(t, trellis.NewTask("seq 1 20000 > t.txt").AddOutput(f, "t.txt"))
				return f
			},
			tamper:    tamper("in"),
			read:      "cat in > out",
			want:      func(t *testing.T, out string) { checkBytes(t, out, original) },
			recreated: 1,
		},
		{
			name:   "directory",
			input:  func(t *testing.T) *trellis.File { return trellis.LocalFile(tree) },
			tamper: tamper("in/sub/b.txt") + " && " + tamper("in/a.txt") + " && echo new > in/sub/new.txt",
			read:   "cp -R in out",
			want: func(t *testing.T, out string) {
				want := map[string]string{"a.txt": summary("alpha\n"), filepath.Join("sub", "b.txt"): summary(original)}
				if diff := cmp.Diff(want, readTree(t, out)); diff != "" {
					t.Errorf("a reader's copy of the directory differs from the original (-want +got):\n%s", diff)
				}
			},
			recreated: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input(t)
			changer := trellis.NewTask(tc.tamper).AddInput(in, "in")
			changer.Retries = 0
			run(t, changer)
			var readers []*trellis.Task
			var outs []string
			for i := range 10 {
				out := filepath.Join(t.TempDir(), fmt.Sprintf("out%d", i))
				r := trellis.NewTask(tc.read).AddInput(in, "in").AddOutput(trellis.Output(out), "out")
				r.Retries = 0
				readers, outs = append(readers, r), append(outs, out)
			}
			run(t, readers...)
			for _, out := range outs {
				tc.want(t, out)
			}
			// The worker dropped the changed copy; the manager staged the
			// file again, from its store or (a temp file) by running its
			// producer again.
			s, err := cl.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if s.TasksRecreated != tc.recreated || s.FilesLost != 0 {
				t.Errorf("status: %d tasks recreated so far, %d files lost; want %d and 0", s.TasksRecreated, s.FilesLost, tc.recreated)
			}
		})
	}
}

// The same sandbox name as an input and an output, through the Go API:
// the command changes the file in place, the output is the changed file,
// and the input's cached original is unchanged.
func TestInPlaceGoAPI(t *testing.T) {
	c := newCluster(t)
	workdir := filepath.Join(t.TempDir(), "w")
	c.worker("w", nil, "--cores", "1", "--workdir", workdir)
	cl := c.client()
	c.waitWorkers(cl, 1)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"staged in the cache": numbers(20000),
		"inline":              "small\n",
	} {
		t.Run(name, func(t *testing.T) {
			local := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".txt")
			writeFile(t, local, content)
			in := trellis.LocalFile(local)
			changed := trellis.Output(filepath.Join(dir, "changed-"+filepath.Base(local)))
			change := trellis.NewTask("printf appended >> data.txt").AddInput(in, "data.txt").AddOutput(changed, "data.txt")
			change.Retries = 0
			copied := trellis.Output(filepath.Join(dir, "copied-"+filepath.Base(local)))
			read := trellis.NewTask("cat data.txt > copy.txt").AddInput(in, "data.txt").AddOutput(copied, "copy.txt")
			read.Retries = 0
			read.After = []*trellis.Task{change}
			hs, err := cl.Submit(context.Background(), change, read)
			if err != nil {
				t.Fatalf("Submit of a task with data.txt as input and output: %v", err)
			}
			for _, h := range hs {
				if r := waitResult(t, h, time.Minute); !r.OK() {
					t.Fatalf("task %s: %v: %s", h.Name, r.Err(), r.Stderr)
				}
			}
			checkBytes(t, changed.Path(), content+"appended")
			checkBytes(t, copied.Path(), content)
			if name == "staged in the cache" {
				// Not dropped and staged again: the command changed a copy.
				checkBytes(t, filepath.Join(workdir, "cache", "files", in.Name()), content)
			}
		})
	}
}

// The same sandbox name as an input and an output in a workflow file, as
// docs/workflow.md documents it.
func TestInPlaceWorkflowFile(t *testing.T) {
	c := newCluster(t)
	c.worker("w", nil, "--cores", "1")
	dir := t.TempDir()
	original := numbers(20000)
	writeFile(t, filepath.Join(dir, "data.txt"), original)
	writeFile(t, filepath.Join(dir, "wf.yaml"), `
name: in-place
tasks:
  - name: change
    command: printf appended >> data.txt
    inputs: {data.txt: data.txt}
    outputs: {data.txt: out/changed.txt}
  - name: read
    command: cat data.txt > copy.txt
    inputs: {data.txt: data.txt}
    outputs: {copy.txt: out/copy.txt}
    after: change
`)
	code, out := runTrellis(t, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(dir, "wf.yaml"))
	if code != 0 {
		t.Fatalf("trellis run: exit %d, output:\n%s", code, out)
	}
	checkBytes(t, filepath.Join(dir, "out", "changed.txt"), original+"appended")
	checkBytes(t, filepath.Join(dir, "out", "copy.txt"), original)
	checkBytes(t, filepath.Join(dir, "data.txt"), original)
}

// checkBytes checks that the file at path holds want, byte for byte.
func checkBytes(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case err != nil:
		t.Errorf("read %s: %v", path, err)
	case string(got) != want:
		t.Errorf("%s: got %s; want %s", path, summary(string(got)), summary(want))
	}
}

func tail(s string) string { return s[max(0, len(s)-24):] }

// summary names content by its size, digest and last bytes.
func summary(content string) string {
	return fmt.Sprintf("%d bytes, sha256 %x, ending %q", len(content), sha256.Sum256([]byte(content)), tail(content))
}
