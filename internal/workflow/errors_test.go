package workflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the error's text, lines joined with newlines
	}{
		{
			name: "empty file",
			yaml: "",
			want: `wf.yaml: empty workflow file: want a mapping with a "tasks" list`,
		},
		{
			name: "yaml syntax error",
			yaml: "tasks:\n  - name: a\n command: [x\n",
			want: "wf.yaml:2: yaml: did not find expected key",
		},
		{
			name: "yaml error without a line",
			yaml: "tasks: *nope\n",
			want: "wf.yaml: yaml: unknown anchor 'nope' referenced",
		},
		{
			name: "two documents",
			yaml: "tasks:\n- {name: a, command: c}\n---\ntasks: []\n",
			want: "wf.yaml:4:1: a workflow file holds one YAML document, found another",
		},
		{
			name: "root is a list",
			yaml: "- a\n- b\n",
			want: `wf.yaml:1:1: want a mapping with a "tasks" list, got a list`,
		},
		{
			name: "missing tasks",
			yaml: "name: x\n",
			want: `wf.yaml:1:1: missing required field "tasks"`,
		},
		{
			name: "empty tasks",
			yaml: "tasks: []\n",
			want: "wf.yaml:1:8: tasks: want at least one task",
		},
		{
			name: "tasks not a list",
			yaml: "tasks:\n  a: b\n",
			want: "wf.yaml:2:3: tasks: want a list of tasks, got a mapping",
		},
		{
			name: "null tasks",
			yaml: "tasks:\n",
			want: "wf.yaml:1:7: tasks: want a list of tasks, got nothing",
		},
		{
			name: "unknown top-level field with suggestion",
			yaml: "taks: []\n",
			want: "wf.yaml:1:1: unknown field \"taks\" (did you mean \"tasks\"?)\nwf.yaml:1:1: missing required field \"tasks\"",
		},
		{
			name: "libraries not a list",
			yaml: "libraries: {}\ntasks:\n- {name: a, command: c}\n",
			want: `wf.yaml:1:12: libraries: want a list of libraries, got a mapping`,
		},
		{
			name: "bad version",
			yaml: "version: 2\ntasks:\n- {name: a, command: c}\n",
			want: "wf.yaml:1:10: version: unsupported version 2 (want 1)",
		},
		{
			name: "version not an integer",
			yaml: "version: one\ntasks:\n- {name: a, command: c}\n",
			want: `wf.yaml:1:10: version: want an integer, got "one"`,
		},
		{
			name: "empty workflow name",
			yaml: "name: ''\ntasks:\n- {name: a, command: c}\n",
			want: "wf.yaml:1:7: name: must not be empty",
		},
		{
			name: "unknown task field with suggestion",
			yaml: "tasks:\n  - name: count\n    command: wc\n    comand: wc\n",
			want: `wf.yaml:4:5: task "count": unknown field "comand" (did you mean "command"?)`,
		},
		{
			name: "unknown task field without suggestion",
			yaml: "tasks:\n  - name: count\n    command: wc\n    color: red\n",
			want: `wf.yaml:4:5: task "count": unknown field "color"`,
		},
		{
			name: "missing name and command",
			yaml: "tasks:\n  - cores: 1\n",
			want: "wf.yaml:2:5: task #1: missing required field \"name\"\nwf.yaml:2:5: task #1: missing required field \"command\"",
		},
		{
			name: "task not a mapping",
			yaml: "tasks:\n  - just a string\n",
			want: `wf.yaml:2:5: task #1: want a mapping, got "just a string"`,
		},
		{
			name: "invalid task name",
			yaml: "tasks:\n  - name: a b\n    command: c\n",
			want: `wf.yaml:2:11: task #1: invalid name "a b": want 1 to 64 of A-Z a-z 0-9 _ . - and not only dots`,
		},
		{
			name: "task name of dots",
			yaml: "tasks:\n  - name: ..\n    command: c\n",
			want: `wf.yaml:2:11: task #1: invalid name "..": want 1 to 64 of A-Z a-z 0-9 _ . - and not only dots`,
		},
		{
			name: "task name too long",
			yaml: "tasks:\n  - name: " + strings.Repeat("x", 65) + "\n    command: c\n",
			want: `wf.yaml:2:11: task #1: invalid name "` + strings.Repeat("x", 60) + `...": want 1 to 64 of A-Z a-z 0-9 _ . - and not only dots`,
		},
		{
			name: "task name not a string",
			yaml: "tasks:\n  - name: [a]\n    command: c\n",
			want: "wf.yaml:2:11: task #1: name: want a string, got a list",
		},
		{
			name: "duplicate task names name both lines",
			yaml: "tasks:\n  - name: a\n    command: c\n  - name: a\n    command: c\n",
			want: `wf.yaml:4:11: task "a": duplicate task name (first defined at line 2)`,
		},
		{
			name: "duplicate key",
			yaml: "tasks:\n  - name: a\n    command: c\n    cores: 1\n    cores: 2\n",
			want: `wf.yaml:5:5: task "a": duplicate key "cores" (first at line 4)`,
		},
		{
			name: "empty command",
			yaml: "tasks:\n  - name: a\n    command: '  '\n",
			want: `wf.yaml:3:14: task "a": command: must not be empty`,
		},
		{
			name: "command not a string",
			yaml: "tasks:\n  - name: a\n    command: {x: y}\n",
			want: `wf.yaml:3:14: task "a": command: want a string, got a mapping`,
		},
		{
			name: "cores not a number",
			yaml: "tasks:\n  - name: x\n    command: c\n    cores: lots\n",
			want: `wf.yaml:4:12: task "x": cores: want a number, got "lots"`,
		},
		{
			name: "cores quoted",
			yaml: "tasks:\n  - name: x\n    command: c\n    cores: \"2\"\n",
			want: `wf.yaml:4:12: task "x": cores: want a number, got the string "2"`,
		},
		{
			name: "cores infinite",
			yaml: "tasks:\n  - name: x\n    command: c\n    cores: .inf\n",
			want: `wf.yaml:4:12: task "x": cores: want a finite number, got ".inf"`,
		},
		{
			name: "negative resources",
			yaml: "tasks:\n  - name: x\n    command: c\n    cores: -0.5\n    memory: -5\n    disk: -1GB\n    gpus: -1\n    retries: -2\n    time_limit: -1s\n",
			want: `wf.yaml:4:12: task "x": cores: must not be negative, got -0.5` + "\n" +
				`wf.yaml:5:13: task "x": memory: must not be negative, got -5` + "\n" +
				`wf.yaml:6:11: task "x": disk: must not be negative, got -1GB` + "\n" +
				`wf.yaml:7:11: task "x": gpus: must not be negative, got -1` + "\n" +
				`wf.yaml:8:14: task "x": retries: must not be negative, got -2` + "\n" +
				`wf.yaml:9:17: task "x": time_limit: must not be negative, got -1s`,
		},
		{
			name: "size with a bad unit",
			yaml: "tasks:\n  - name: x\n    command: c\n    memory: 12XB\n",
			want: `wf.yaml:4:13: task "x": memory: unknown unit "XB" in "12XB": want KB, MB, GB or TB`,
		},
		{
			name: "size that is not a size",
			yaml: "tasks:\n  - name: x\n    command: c\n    disk: big\n    memory: 1.5\n",
			want: `wf.yaml:4:11: task "x": disk: want an integer number of MB or a size like "512MB" or "2GB", got "big"` + "\n" +
				`wf.yaml:5:13: task "x": memory: want an integer number of MB or a size like "512MB" or "2GB", got "1.5"`,
		},
		{
			name: "size too large",
			yaml: "tasks:\n  - name: x\n    command: c\n    memory: 9999999999TB\n",
			want: `wf.yaml:4:13: task "x": memory: 9999999999TB is too large`,
		},
		{
			name: "integer fields",
			yaml: "tasks:\n  - name: x\n    command: c\n    gpus: 1.5\n    priority: high\n    retries: 99999999999\n",
			want: `wf.yaml:4:11: task "x": gpus: want an integer, got "1.5"` + "\n" +
				`wf.yaml:5:15: task "x": priority: want an integer, got "high"` + "\n" +
				`wf.yaml:6:14: task "x": retries: 99999999999 is out of range`,
		},
		{
			name: "bad bool",
			yaml: "tasks:\n  - name: x\n    command: c\n    retry_on_error: yes\n",
			want: `wf.yaml:4:21: task "x": retry_on_error: want true or false, got "yes"`,
		},
		{
			name: "bad durations",
			yaml: "tasks:\n  - name: x\n    command: c\n    time_limit: 30\n  - name: y\n    command: c\n    time_limit: soon\n",
			want: `wf.yaml:4:17: task "x": time_limit: want a duration like "30s" or "1h30m", got "30"` + "\n" +
				`wf.yaml:7:17: task "y": time_limit: want a duration like "30s" or "1h30m", got "soon"`,
		},
		{
			name: "tags not strings",
			yaml: "tasks:\n  - name: x\n    command: c\n    tags: [a, [b]]\n",
			want: `wf.yaml:4:15: task "x": tags: want a string, got a list`,
		},
		{
			name: "sandbox names that escape",
			yaml: "tasks:\n  - name: x\n    command: c\n    inputs:\n      ../x: a\n      /etc/passwd: b\n      a/../../b: c\n      '': d\n      \"n\\0ul\": e\n      .: f\n    outputs:\n      ..: o\n",
			want: `wf.yaml:5:7: task "x": input name "../x" escapes the sandbox` + "\n" +
				`wf.yaml:6:7: task "x": input name "/etc/passwd" escapes the sandbox` + "\n" +
				`wf.yaml:7:7: task "x": input name "a/../../b" escapes the sandbox` + "\n" +
				`wf.yaml:8:7: task "x": input name "" escapes the sandbox` + "\n" +
				`wf.yaml:9:7: task "x": input name "n\x00ul" escapes the sandbox` + "\n" +
				`wf.yaml:10:7: task "x": input name "." does not name a file in the sandbox` + "\n" +
				`wf.yaml:12:7: task "x": output name ".." escapes the sandbox`,
		},
		{
			name: "sandbox names that are the same file",
			yaml: "tasks:\n  - name: x\n    command: c\n    inputs:\n      a/b: a\n      a//b: b\n",
			want: `wf.yaml:6:7: task "x": input names "a/b" and "a//b" are the same file`,
		},
		{
			name: "bad input sources",
			yaml: "tasks:\n  - name: x\n    command: c\n    inputs:\n      a: {local: p, buffer: b}\n      b: {}\n      c: {bufer: x}\n      d: [x]\n      e: ''\n      f: {buffer: [1]}\n      g:\n",
			want: `wf.yaml:5:10: task "x": input "a": want only one of "local", "buffer" or "file"` + "\n" +
				`wf.yaml:6:10: task "x": input "b": want one of "local", "buffer" or "file"` + "\n" +
				`wf.yaml:7:11: task "x": input "c": unknown field "bufer" (did you mean "buffer"?)` + "\n" +
				`wf.yaml:8:10: task "x": input "d": want a path or a mapping with "local", "buffer" or "file", got a list` + "\n" +
				`wf.yaml:9:10: task "x": input "e": path must not be empty` + "\n" +
				`wf.yaml:10:19: task "x": input "f": buffer: want a string, got a list` + "\n" +
				`wf.yaml:11:9: task "x": input "g": want a path or a mapping with "local", "buffer" or "file", got nothing`,
		},
		{
			name: "inputs and outputs not mappings",
			yaml: "tasks:\n  - name: x\n    command: c\n    inputs: [a]\n    outputs: a\n",
			want: `wf.yaml:4:13: task "x": inputs: want a mapping of sandbox names to sources, got a list` + "\n" +
				`wf.yaml:5:14: task "x": outputs: want a mapping of sandbox names to paths, got "a"`,
		},
		{
			name: "two tasks write the same path",
			yaml: "tasks:\n  - name: a\n    command: c\n    outputs: {x: out/x}\n  - name: b\n    command: c\n    outputs: {y: out/./x}\n",
			want: `wf.yaml:7:18: task "b": output "y": path "out/./x" is also written by task "a" (line 4)`,
		},
		{
			name: "one task writes a path twice",
			yaml: "tasks:\n  - name: a\n    command: c\n    outputs:\n      x: out/z\n      y: out/z\n",
			want: `wf.yaml:6:10: task "a": output "y": path "out/z" is also written by output "x"`,
		},
		{
			name: "output inside another output",
			yaml: "tasks:\n  - name: a\n    command: c\n    outputs: {d: out}\n  - name: b\n    command: c\n    outputs: {f: out/f.txt}\n",
			want: `wf.yaml:7:18: task "b": output "f": path "out/f.txt" is inside "out", which is written by task "a" (line 4)`,
		},
		{
			name: "task reads its own output",
			yaml: "tasks:\n  - name: a\n    command: c\n    inputs: {in: out/x}\n    outputs: {x: out/x}\n",
			want: `wf.yaml:4:18: task "a": input "in": reads its own output "out/x"`,
		},
		{
			name: "after names an unknown task",
			yaml: "tasks:\n  - name: split\n    command: c\n  - name: b\n    command: c\n    after: [splt, zzz]\n",
			want: `wf.yaml:6:13: task "b": after: unknown task "splt" (did you mean "split"?)` + "\n" +
				`wf.yaml:6:19: task "b": after: unknown task "zzz"`,
		},
		{
			name: "after names the task itself",
			yaml: "tasks:\n  - name: a\n    command: c\n    after: a\n",
			want: `wf.yaml:4:12: task "a": after: a task cannot wait for itself`,
		},
		{
			name: "cycle through after",
			yaml: "tasks:\n  - name: a\n    command: c\n    after: [b]\n  - name: b\n    command: c\n    after: [a]\n",
			want: `wf.yaml:2:5: cycle: a -> b -> a`,
		},
		{
			name: "cycle through files",
			yaml: "tasks:\n- {name: a, command: c, inputs: {i: z}, outputs: {o: x}}\n- {name: b, command: c, inputs: {i: x}, outputs: {o: y}}\n- {name: c, command: c, inputs: {i: y}, outputs: {o: z}}\n- {name: d, command: c, inputs: {i: z}}\n",
			want: `wf.yaml:2:3: cycle: a -> c -> b -> a`,
		},
		{
			name: "env problems",
			yaml: "tasks:\n  - name: a\n    command: c\n    env:\n      A=B: x\n      C: [1]\n      D:\n",
			want: `wf.yaml:5:7: task "a": env: invalid variable name "A=B"` + "\n" +
				`wf.yaml:6:10: task "a": env "C": want a string, got a list` + "\n" +
				`wf.yaml:7:9: task "a": env "D": want a string, got nothing`,
		},
		{
			name: "defaults problems",
			yaml: "defaults:\n  coers: 1\n  command: x\n  memory: lots\ntasks:\n- {name: a, command: c}\n",
			want: `wf.yaml:2:3: defaults: unknown field "coers" (did you mean "cores"?)` + "\n" +
				`wf.yaml:3:3: defaults: field "command" cannot have a default` + "\n" +
				`wf.yaml:4:11: defaults: memory: want an integer number of MB or a size like "512MB" or "2GB", got "lots"`,
		},
		{
			name: "merge keys",
			yaml: "x: &d {cores: 1}\ntasks:\n- {<<: *d, name: a, command: c}\n",
			want: `wf.yaml:1:1: unknown field "x"` + "\n" + `wf.yaml:3:4: task "a": merge keys (<<) are not supported`,
		},
		{
			name: "problems in several tasks are sorted by position",
			yaml: "tasks:\n  - name: b\n    command: c\n    after: [a]\n    cores: x\n  - name: a\n    command: c\n    after: [b]\n",
			want: `wf.yaml:2:5: cycle: b -> a -> b` + "\n" +
				`wf.yaml:5:12: task "b": cores: want a number, got "x"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", "/base", []byte(tc.yaml))
			if w != nil {
				t.Errorf("Parse returned a workflow along with error %v", err)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse error = %v (%T), want an ErrorList", err, err)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("tasks:\n")
	for range 30 {
		b.WriteString("- {name: t, command: c}\n")
	}
	_, err := Parse("wf.yaml", "/base", []byte(b.String()))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error = %v, want an ErrorList", err)
	}
	if got, want := len(list), maxErrors+1; got != want {
		t.Fatalf("got %d errors, want %d", got, want)
	}
	if diff := cmp.Diff(&Error{File: "wf.yaml", Msg: "too many errors"}, list[maxErrors]); diff != "" {
		t.Errorf("last error mismatch (-want +got):\n%s", diff)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"line and column", &Error{File: "f.yaml", Line: 3, Col: 7, Msg: "bad"}, "f.yaml:3:7: bad"},
		{"line only", &Error{File: "f.yaml", Line: 3, Msg: "bad"}, "f.yaml:3: bad"},
		{"no position", &Error{File: "f.yaml", Msg: "bad"}, "f.yaml: bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}
