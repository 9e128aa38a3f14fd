package workflow

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const callsFile = `name: calls
files:
  model: {temp: true}
  sdk: {local: sdk/trellis_library.py}
tasks:
  - name: train
    command: train > model.json 2> log.txt
    outputs: {model.json: {file: model}, log.txt: out/log.txt}
  - name: other
    command: "true"
libraries:
  - name: scorer
    command: python3 scorer.py
    inputs:
      trellis_library.py: {file: sdk}
      scorer.py: scorer.py
      model.json: {file: model}
      log.txt: out/log.txt
    env: {B: "2", A: "1"}
    cores: 0.5
    memory: 1GB
    disk: 2GB
    gpus: 1
    slots: 4
    mode: fork
    eager: 1
    max_instances: 2
    start_timeout: 30s
  - name: plain
    command: ./serve
calls:
  - name: score
    library: scorer
    function: score
    args: {shard: 1, name: "a<b>&c", list: [1, 2.5, true, null, "3", 0x1F, 1e3], nested: {z: 1, a: 2}}
    output: out/score.json
    after: other
    retries: 1
    retry_on_error: true
    time_limit: 10s
    priority: 2
  - library: scorer
    function: score
    args_file: args/two.json
    after: [last, score]
  - name: last
    library: plain
    function: f.v2
`

func TestParseLibrariesAndCalls(t *testing.T) {
	dir := t.TempDir()
	got, err := Parse("calls.yaml", dir, []byte(callsFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }
	wantLibs := []Library{
		{
			Name:    "scorer",
			Line:    12,
			Command: "python3 scorer.py",
			Inputs: []Input{
				{Name: "log.txt", Local: p("out/log.txt"), Producer: 0},
				{Name: "model.json", File: "model", Producer: 0},
				{Name: "scorer.py", Local: p("scorer.py"), Producer: -1},
				{Name: "trellis_library.py", File: "sdk", Producer: -1},
			},
			Env:          []string{"A=1", "B=2"},
			Cores:        0.5,
			MemoryMB:     1024,
			DiskMB:       2048,
			GPUs:         1,
			Slots:        4,
			Mode:         "fork",
			Eager:        1,
			MaxInstances: 2,
			StartTimeout: 30 * time.Second,
			After:        []int{0},
		},
		{Name: "plain", Line: 29, Command: "./serve"},
	}
	if diff := cmp.Diff(wantLibs, got.Libraries); diff != "" {
		t.Errorf("libraries mismatch (-want +got):\n%s", diff)
	}
	wantCalls := []Call{
		{
			Name:         "score",
			Line:         32,
			Library:      "scorer",
			Function:     "score",
			Args:         []byte(`{"shard":1,"name":"a<b>&c","list":[1,2.5,true,null,"3",31,1000],"nested":{"z":1,"a":2}}`),
			Output:       p("out/score.json"),
			Retries:      1,
			RetryOnError: true,
			TimeLimit:    10 * time.Second,
			Priority:     2,
			After:        []int{0, 1}, // train writes the library's inputs; other is named
		},
		{
			Line:       42,
			Library:    "scorer",
			Function:   "score",
			ArgsFile:   p("args/two.json"),
			Retries:    DefaultRetries,
			After:      []int{0},
			AfterCalls: []int{0, 2},
		},
		{Name: "last", Line: 46, Library: "plain", Function: "f.v2", Retries: DefaultRetries},
	}
	if diff := cmp.Diff(wantCalls, got.Calls); diff != "" {
		t.Errorf("calls mismatch (-want +got):\n%s", diff)
	}
	if !json.Valid(got.Calls[0].Args) {
		t.Errorf("args %s are not valid JSON", got.Calls[0].Args)
	}
}

func TestCallsWithoutTasks(t *testing.T) {
	w, err := Parse("wf.yaml", "/base", []byte("libraries: [{name: l, command: c}]\ncalls: [{library: l, function: f}]\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(w.Tasks) != 0 || len(w.Calls) != 1 {
		t.Errorf("got %d tasks and %d calls, want 0 and 1", len(w.Tasks), len(w.Calls))
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name, args, want string
	}{
		{"none", "", ""},
		{"null", "args: null", "null"},
		{"number", "args: 3", "3"},
		{"quoted number is a string", `args: "3"`, `"3"`},
		{"negative and float", "args: [-7, -0.5, .5, 1.0]", "[-7,-0.5,0.5,1]"},
		{"big integer", "args: 18446744073709551615", "18446744073709551615"},
		{"booleans and YAML 1.1 words", "args: [true, false, yes, on]", `[true,false,"yes","on"]`},
		{"string escapes", `args: "tab\there \"quoted\" é <&>"`, `"tab\there \"quoted\" é <&>"`},
		{"mapping order is kept", "args: {b: 1, a: {d: 2, c: 3}}", `{"b":1,"a":{"d":2,"c":3}}`},
		{"keys are strings", "args: {1: a, true: b, null: c}", `{"1":"a","true":"b","null":"c"}`},
		{"timestamp stays text", "args: 2024-01-02", `"2024-01-02"`},
		{"binary stays base64", "args: !!binary aGVsbG8=", `"aGVsbG8="`},
		{"block text", "args: |\n      two\n      lines", `"two\nlines\n"`},
		{"aliases", "args: {a: &x [1, 2], b: *x}", `{"a":[1,2],"b":[1,2]}`},
		{"empty containers", "args: {a: [], b: {}}", `{"a":[],"b":{}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "libraries: [{name: l, command: c}]\ncalls:\n  - library: l\n    function: f\n"
			if tc.args != "" {
				yaml += "    " + tc.args + "\n"
			}
			w, err := Parse("wf.yaml", "/base", []byte(yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := w.Calls[0].Args
			if string(got) != tc.want {
				t.Errorf("args %s = %s, want %s", tc.args, got, tc.want)
			}
			if tc.want != "" && !json.Valid(got) {
				t.Errorf("args %s = %s, not valid JSON", tc.args, got)
			}
		})
	}
}

func TestLibraryAndCallErrors(t *testing.T) {
	const lib = "libraries:\n  - name: lib\n    command: c\n"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "unknown library field",
			yaml: "libraries:\n  - name: lib\n    command: c\n    outputs: {a: b}\n    slot: 2\ncalls: [{library: lib, function: f}]\n",
			want: `wf.yaml:4:5: library "lib": unknown field "outputs"` + "\n" +
				`wf.yaml:5:5: library "lib": unknown field "slot" (did you mean "slots"?)`,
		},
		{
			name: "missing library fields",
			yaml: "libraries:\n  - cores: 1\ncalls: [{library: x, function: f}]\n",
			want: `wf.yaml:2:5: library #1: missing required field "name"` + "\n" +
				`wf.yaml:2:5: library #1: missing required field "command"` + "\n" +
				`wf.yaml:3:19: call #1: library: unknown library "x"`,
		},
		{
			name: "library not a mapping",
			yaml: "libraries: [lib]\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:1:13: library #1: want a mapping, got "lib"`,
		},
		{
			name: "invalid library name",
			yaml: "libraries:\n  - name: .lib\n    command: c\ncalls: [{library: .lib, function: f}]\n",
			want: `wf.yaml:2:11: library #1: invalid name ".lib": want 1 to 64 of A-Z a-z 0-9 _ . - and no dot first`,
		},
		{
			name: "duplicate library name",
			yaml: lib + "  - name: lib\n    command: d\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:4:11: library "lib": duplicate library name (first defined at line 2)`,
		},
		{
			name: "library values of the wrong type",
			yaml: "libraries:\n  - name: lib\n    command: [c]\n    slots: 0\n    mode: forked\n    eager: -1\n    max_instances: many\n    start_timeout: 10\n    memory: lots\n    env: x\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:3:14: library "lib": command: want a string, got a list` + "\n" +
				`wf.yaml:4:12: library "lib": slots: must be at least 1, got 0` + "\n" +
				`wf.yaml:5:11: library "lib": mode: want "direct" or "fork", got "forked" (did you mean "fork"?)` + "\n" +
				`wf.yaml:6:12: library "lib": eager: must not be negative, got -1` + "\n" +
				`wf.yaml:7:20: library "lib": max_instances: want an integer, got "many"` + "\n" +
				`wf.yaml:8:20: library "lib": start_timeout: want a duration like "30s" or "1h30m", got "10"` + "\n" +
				`wf.yaml:9:13: library "lib": memory: want an integer number of MB or a size like "512MB" or "2GB", got "lots"` + "\n" +
				`wf.yaml:10:10: library "lib": env: want a mapping of variable names to values, got "x"`,
		},
		{
			name: "more eager instances than the most allowed",
			yaml: lib + "    eager: 3\n    max_instances: 2\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:4:12: library "lib": eager: 3 instances is more than max_instances (2)`,
		},
		{
			name: "library inputs",
			yaml: "files: {t: {temp: true}}\n" + lib + "    inputs:\n      ../x: a\n      m: {file: t}\n      n: {file: nope}\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:6:7: library "lib": input name "../x" escapes the sandbox` + "\n" +
				`wf.yaml:7:17: temp file "t" is read by library "lib" but no task writes it` + "\n" +
				`wf.yaml:8:17: library "lib": input "n": unknown file "nope"`,
		},
		{
			name: "libraries and calls not lists",
			yaml: "libraries: lib\ncalls: {a: b}\ntasks: [{name: a, command: c}]\n",
			want: `wf.yaml:1:12: libraries: want a list of libraries, got "lib"` + "\n" +
				`wf.yaml:2:8: calls: want a list of calls, got a mapping`,
		},
		{
			name: "neither tasks nor calls",
			yaml: lib + "calls: []\n",
			want: `wf.yaml:1:1: missing required field "tasks"`,
		},
		{
			name: "unknown call field",
			yaml: lib + "calls:\n  - library: lib\n    function: f\n    arg: 1\n    cores: 1\n",
			want: `wf.yaml:7:5: call #1: unknown field "arg" (did you mean "args"?)` + "\n" +
				`wf.yaml:8:5: call #1: unknown field "cores"`,
		},
		{
			name: "missing call fields",
			yaml: lib + "calls:\n  - name: c\n",
			want: `wf.yaml:5:5: call "c": missing required field "library"` + "\n" +
				`wf.yaml:5:5: call "c": missing required field "function"`,
		},
		{
			name: "unknown library in a call",
			yaml: lib + "calls:\n  - {name: c, library: lbi, function: f}\n",
			want: `wf.yaml:5:24: call "c": library: unknown library "lbi" (did you mean "lib"?)`,
		},
		{
			name: "call values of the wrong type",
			yaml: lib + "calls:\n  - name: c\n    library: [lib]\n    function: f/g\n    output: ''\n    args_file: {a: b}\n    retries: -1\n    time_limit: soon\n    priority: high\n    retry_on_error: 1\n",
			want: `wf.yaml:6:14: call "c": library: want a string, got a list` + "\n" +
				`wf.yaml:7:15: call "c": function: invalid function name "f/g": want 1 to 128 of A-Z a-z 0-9 _ . - and no dot first` + "\n" +
				`wf.yaml:8:13: call "c": output: path must not be empty` + "\n" +
				`wf.yaml:9:16: call "c": args_file: want a path, got a mapping` + "\n" +
				`wf.yaml:10:14: call "c": retries: must not be negative, got -1` + "\n" +
				`wf.yaml:11:17: call "c": time_limit: want a duration like "30s" or "1h30m", got "soon"` + "\n" +
				`wf.yaml:12:15: call "c": priority: want an integer, got "high"` + "\n" +
				`wf.yaml:13:21: call "c": retry_on_error: want true or false, got "1"`,
		},
		{
			name: "args and args_file",
			yaml: lib + "calls:\n  - {library: lib, function: f, args: 1, args_file: a.json}\n",
			want: `wf.yaml:5:53: call #1: args_file: want only one of "args" or "args_file"`,
		},
		{
			name: "args with no JSON form",
			yaml: lib + "calls:\n  - {library: lib, function: f, args: [.nan, -.inf]}\n  - {library: lib, function: f, args: {[a]: 1}}\n",
			want: `wf.yaml:5:40: call #1: args: ".nan" is not a number that JSON can hold` + "\n" +
				`wf.yaml:6:40: call #2: want a string key, got a list`,
		},
		{
			name: "args too large",
			yaml: lib + "calls:\n  - library: lib\n    function: f\n    args: {a: &a [" + strings.Repeat("xxxxxxxxxxxxxxxx, ", 100) + "], b: [" + strings.Repeat("*a, ", 700) + "]}\n",
			want: `wf.yaml:7:11: call #1: args: more than the 1048576 bytes of JSON that a call may carry`,
		},
		{
			name: "names shared by tasks and calls",
			yaml: lib + "tasks:\n  - {name: x, command: c}\ncalls:\n  - {name: x, library: lib, function: f}\n  - {name: y, library: lib, function: f}\n  - {name: y, library: lib, function: f}\n",
			want: `wf.yaml:7:12: call "x": name already used by task "x" (line 5)` + "\n" +
				`wf.yaml:9:12: call "y": duplicate call name (first defined at line 8)`,
		},
		{
			name: "after in calls",
			yaml: lib + "tasks:\n  - {name: t, command: c, after: [c1]}\ncalls:\n  - {name: c1, library: lib, function: f, after: [c1, t2, nope]}\n",
			want: `wf.yaml:5:35: task "t": after: "c1" is a call, and tasks cannot wait for calls` + "\n" +
				`wf.yaml:7:51: call "c1": after: a call cannot wait for itself` + "\n" +
				`wf.yaml:7:55: call "c1": after: unknown task or call "t2" (did you mean "t"?)` + "\n" +
				`wf.yaml:7:59: call "c1": after: unknown task or call "nope"`,
		},
		{
			name: "cycle of calls",
			yaml: lib + "calls:\n  - {name: a, library: lib, function: f, after: b}\n  - {name: b, library: lib, function: f, after: a}\n",
			want: `wf.yaml:5:5: cycle: a -> b -> a`,
		},
		{
			name: "call outputs",
			yaml: lib + "tasks:\n  - {name: t, command: c, outputs: {o: out/a.json, d: dir}}\ncalls:\n" +
				"  - {name: c1, library: lib, function: f, output: out/./a.json}\n" +
				"  - {name: c2, library: lib, function: f, output: dir/b.json}\n" +
				"  - {name: c3, library: lib, function: f, output: res}\n" +
				"  - {name: c4, library: lib, function: f, output: res}\n",
			want: `wf.yaml:7:51: call "c1": output: path "out/./a.json" is also written by task "t" (line 5)` + "\n" +
				`wf.yaml:8:51: call "c2": output: path "dir/b.json" is inside "dir", which is written by task "t" (line 5)` + "\n" +
				`wf.yaml:10:51: call "c4": output: path "res" is also written by call "c3" (line 9)`,
		},
		{
			name: "reading the result of a call",
			yaml: "files: {r: {local: out/r.json}}\nlibraries:\n  - {name: lib, command: c, inputs: {r: out/r.json}}\n" +
				"tasks:\n  - {name: t, command: c, inputs: {r: out/r.json}}\n" +
				"calls:\n  - {name: c1, library: lib, function: f, output: out/r.json}\n  - {name: c2, library: lib, function: f, args_file: out/r.json}\n",
			want: `wf.yaml:1:20: file "r": local: path "out/r.json" is written by call "c1" (line 7); declare a temp file for data that tasks pass on` + "\n" +
				`wf.yaml:3:41: library "lib": input "r": path "out/r.json" is written by call "c1" (line 7), and a library cannot wait for calls` + "\n" +
				`wf.yaml:5:39: task "t": input "r": path "out/r.json" is written by call "c1" (line 7), and a task cannot wait for calls` + "\n" +
				`wf.yaml:8:54: call "c2": args_file: path "out/r.json" is written by call "c1" (line 7); arguments are read when the workflow starts`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", "/base", []byte(tc.yaml))
			if w != nil {
				t.Errorf("Parse returned a workflow along with error %v", err)
			}
			if diff := cmp.Diff(tc.want, errString(err)); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
