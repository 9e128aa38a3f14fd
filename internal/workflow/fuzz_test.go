package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics and that what it returns is
// consistent: either a workflow whose indexes and order hold up, or an
// ErrorList of positioned problems.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodFile))
	if data, err := os.ReadFile(filepath.Join(exampleDir, "wordcount.yaml")); err == nil {
		f.Add(data)
	}
	f.Add([]byte("tasks:\n- {name: a, command: c, inputs: {x: y}, outputs: {y: x}}\n- {name: b, command: c, inputs: {x: x}, after: a}\n"))
	f.Add([]byte("tasks:\n- &t {name: a, command: c}\n- *t\n"))
	f.Add([]byte("tasks:\n- {name: a, command: c, memory: 1.5GB, disk: 3 kb, time_limit: 1h, cores: .5}\n"))
	f.Add([]byte("a: &a\n  b: *a\ntasks: *a\n"))
	f.Add([]byte("tasks:\n- name: a\n  command: c\n  inputs: {b: !!binary aGVsbG8=}\n"))
	f.Add([]byte(filesFile))
	if data, err := os.ReadFile(filepath.Join(dataflowDir, "dataflow.yaml")); err == nil {
		f.Add(data)
	}
	f.Add([]byte("files:\n  t: {temp: true, replicas: 2, cache: task}\n  d: {unpack: t, format: zip}\n" +
		"tasks:\n- {name: a, command: c, outputs: {o: {file: t}}}\n- {name: b, command: c, inputs: {i: {file: d}}}\n"))
	f.Add([]byte("files:\n  a: {unpack: b}\n  b: {unpack: a}\n  u: {url: 'file:///x', cache: forever}\n" +
		"tasks:\n- {name: a, command: c, inputs: {i: {file: u}, j: {file: a}}, outputs: {o: {file: u}}}\n"))
	f.Add([]byte(callsFile))
	f.Add([]byte("libraries: [{name: l, command: c, inputs: {a: {file: t}}, eager: 1}]\nfiles: {t: {temp: true}}\n" +
		"tasks: [{name: a, command: c, outputs: {o: {file: t}}}]\n" +
		"calls:\n- {name: x, library: l, function: f, args: {a: [1, &v 2.5, *v]}, output: out/x, after: a}\n- {library: l, function: g, after: x, args_file: a.json}\n"))
	f.Add([]byte("libraries: [{name: l, command: c}]\ncalls:\n- {name: a, library: l, function: f, after: b}\n- {name: b, library: l, function: f, after: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Parse("wf.yaml", "/base", data)
		if err != nil {
			if w != nil {
				t.Fatalf("Parse returned a workflow and an error: %v", err)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 || len(list) > maxErrors+1 {
				t.Fatalf("Parse error is not a non-empty, bounded ErrorList: %#v", err)
			}
			for _, e := range list {
				if e.File != "wf.yaml" || e.Msg == "" || e.Line < 0 || e.Col < 0 {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if len(w.Tasks) == 0 && len(w.Calls) == 0 {
			t.Fatal("workflow without tasks or calls")
		}
		files := map[string]File{}
		for _, file := range w.Files {
			if _, dup := files[file.Name]; dup || !validName.MatchString(file.Name) {
				t.Fatalf("file %q has a bad or repeated name", file.Name)
			}
			files[file.Name] = file
			if file.Replicas != 0 && file.Kind != Temp {
				t.Fatalf("file %q of kind %v has replicas", file.Name, file.Kind)
			}
		}
		for _, file := range w.Files {
			if _, ok := files[file.Unpack]; (file.Kind == Unpack) != ok {
				t.Fatalf("file %q of kind %v unpacks %q", file.Name, file.Kind, file.Unpack)
			}
		}
		writes := func(task int, temp string) bool {
			return task >= 0 && task < len(w.Tasks) &&
				slices.ContainsFunc(w.Tasks[task].Outputs, func(o Output) bool { return o.File == temp })
		}
		written := map[string]bool{} // temp files, by the outputs that write them
		names := map[string]bool{}
		for i, task := range w.Tasks {
			if names[task.Name] || !validName.MatchString(task.Name) {
				t.Fatalf("task %d has a bad or repeated name %q", i, task.Name)
			}
			names[task.Name] = true
			if !slices.IsSorted(task.After) || len(slices.Compact(slices.Clone(task.After))) != len(task.After) {
				t.Fatalf("task %q: After %v is not sorted and unique", task.Name, task.After)
			}
			for _, a := range task.After {
				if a < 0 || a >= len(w.Tasks) || a == i {
					t.Fatalf("task %q: bad After index %d", task.Name, a)
				}
			}
			for _, in := range task.Inputs {
				if in.Producer != -1 && !slices.Contains(task.After, in.Producer) {
					t.Fatalf("task %q: producer %d of %q is not in After", task.Name, in.Producer, in.Name)
				}
				if in.Local != "" && !filepath.IsAbs(in.Local) {
					t.Fatalf("task %q: input %q is not absolute", task.Name, in.Local)
				}
				if in.File == "" {
					continue
				}
				if in.Local != "" || in.Buffer != nil {
					t.Fatalf("task %q: input %q has more than one source", task.Name, in.Name)
				}
				root, ok := files[in.File]
				for n := 0; ok && root.Kind == Unpack && n <= len(files); n++ {
					root, ok = files[root.Unpack]
				}
				switch {
				case !ok || root.Kind == Unpack:
					t.Fatalf("task %q: input %q reads %q, which is not declared or unpacks in a loop", task.Name, in.Name, in.File)
				case root.Kind == Temp && !writes(in.Producer, root.Name):
					t.Fatalf("task %q: input %q reads temp file %q, but its producer %d does not write it", task.Name, in.Name, root.Name, in.Producer)
				case root.Kind != Temp && in.Producer != -1:
					t.Fatalf("task %q: input %q reads %q of kind %v, but has producer %d", task.Name, in.Name, in.File, root.Kind, in.Producer)
				}
			}
			for _, out := range task.Outputs {
				if (out.File == "") == (out.Local == "") {
					t.Fatalf("task %q: output %q wants exactly one of File and Local", task.Name, out.Name)
				}
				if out.File != "" && files[out.File].Kind != Temp {
					t.Fatalf("task %q: output %q writes %q, which is not a temp file", task.Name, out.Name, out.File)
				}
				if out.File != "" && written[out.File] {
					t.Fatalf("task %q: output %q writes temp file %q, which another output writes too", task.Name, out.Name, out.File)
				}
				written[out.File] = out.File != ""
			}
		}
		if hasCycle(w) {
			t.Fatal("accepted a workflow with a cycle")
		}
		checkLibrariesAndCalls(t, w, files)
	})
}

// checkLibrariesAndCalls checks what FuzzParse accepted of libraries and
// calls: names, indexes, what they wait for, and arguments.
func checkLibrariesAndCalls(t *testing.T, w *Workflow, files map[string]File) {
	libs := map[string]Library{}
	for _, lib := range w.Libraries {
		if _, dup := libs[lib.Name]; dup || nameProblem("library", lib.Name) != "" {
			t.Fatalf("library %q has a bad or repeated name", lib.Name)
		}
		libs[lib.Name] = lib
		if lib.Command == "" || lib.Slots < 0 || lib.Eager < 0 || lib.MaxInstances < 0 || lib.StartTimeout < 0 ||
			(lib.MaxInstances > 0 && lib.Eager > lib.MaxInstances) || (lib.Mode != "" && lib.Mode != "direct" && lib.Mode != "fork") {
			t.Fatalf("library %q: bad settings %+v", lib.Name, lib)
		}
		checkWaits(t, "library "+lib.Name, lib.After, len(w.Tasks), -1)
		for _, in := range lib.Inputs {
			if in.Producer != -1 && !slices.Contains(lib.After, in.Producer) {
				t.Fatalf("library %q: producer %d of %q is not in After", lib.Name, in.Producer, in.Name)
			}
			if _, ok := files[in.File]; in.File != "" && !ok {
				t.Fatalf("library %q: input %q reads an undeclared file %q", lib.Name, in.Name, in.File)
			}
		}
	}
	names := map[string]bool{}
	for _, task := range w.Tasks {
		names[task.Name] = true
	}
	after := make([][]int, len(w.Calls))
	for i, c := range w.Calls {
		label := fmt.Sprintf("call %d (%s)", i, c.Name)
		if c.Name != "" && (names[c.Name] || nameProblem("call", c.Name) != "") {
			t.Fatalf("%s has a bad or repeated name", label)
		}
		names[c.Name] = c.Name != ""
		lib, ok := libs[c.Library]
		if !ok || !validFunction.MatchString(c.Function) {
			t.Fatalf("%s calls %q of unknown library %q", label, c.Function, c.Library)
		}
		checkWaits(t, label, c.After, len(w.Tasks), -1)
		checkWaits(t, label, c.AfterCalls, len(w.Calls), i)
		for _, a := range lib.After {
			if !slices.Contains(c.After, a) {
				t.Fatalf("%s does not wait for task %d, which writes an input of its library", label, a)
			}
		}
		if c.Args != nil && (c.ArgsFile != "" || !json.Valid(c.Args) || len(c.Args) > MaxArgsBytes) {
			t.Fatalf("%s: bad args %q (args file %q)", label, c.Args, c.ArgsFile)
		}
		for _, p := range []string{c.ArgsFile, c.Output} {
			if p != "" && !filepath.IsAbs(p) {
				t.Fatalf("%s: path %q is not absolute", label, p)
			}
		}
		if c.Retries < 0 || c.TimeLimit < 0 {
			t.Fatalf("%s: negative retries or time limit", label)
		}
		after[i] = c.AfterCalls
	}
	if comps := components(after); len(comps) != len(w.Calls) {
		t.Fatal("accepted calls that wait for each other in a cycle")
	}
}

// checkWaits checks that after is sorted and unique, and indexes a list of
// n items without naming self.
func checkWaits(t *testing.T, label string, after []int, n, self int) {
	if !slices.IsSorted(after) || len(slices.Compact(slices.Clone(after))) != len(after) {
		t.Fatalf("%s: %v is not sorted and unique", label, after)
	}
	for _, a := range after {
		if a < 0 || a >= n || a == self {
			t.Fatalf("%s: bad index %d in %v", label, a, after)
		}
	}
}

// hasCycle reports whether the tasks' After lists form a cycle.
func hasCycle(w *Workflow) bool {
	state := make([]int, len(w.Tasks)) // 0 new, 1 on the path, 2 done
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = 1
		for _, a := range w.Tasks[i].After {
			if state[a] == 1 || (state[a] == 0 && visit(a)) {
				return true
			}
		}
		state[i] = 2
		return false
	}
	for i := range w.Tasks {
		if state[i] == 0 && visit(i) {
			return true
		}
	}
	return false
}
