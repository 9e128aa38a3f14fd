package workflow

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const filesFile = `name: data
files:
  words:    {url: "https://example.org/words.txt", cache: forever}
  tools:    {local: tools.tar.gz, cache: worker}
  toolbox:  {unpack: tools, format: tar.gz}
  greeting: {buffer: "hello\n", cache: task}
  counts:   {temp: true, replicas: 2}
  packed:   {temp: true, cache: workflow}
  unpacked: {unpack: packed}
  mounted:  {url: "file:///data/ref", cache: worker}
  logo:     {buffer: !!binary aGVsbG8=}
tasks:
  - name: count
    command: bin/count words.txt > counts.txt 2> log.txt
    inputs:
      words.txt: {file: words}
      bin: {file: toolbox}
      hi.txt: {file: greeting}
      inline.txt: {buffer: "x"}
    outputs:
      counts.txt: {file: counts}
      log.txt: out/log.txt
  - name: pack
    command: tar czf p.tgz /etc/hostname
    outputs:
      p.tgz: {file: packed}
  - name: report
    command: cat c.txt log.txt
    inputs:
      c.txt: {file: counts}
      log.txt: out/log.txt
      dir: {file: unpacked}
      ref: {file: mounted}
  - name: again
    command: cat c.txt
    inputs:
      c.txt: {file: counts}
      img: {file: logo}
      tools.tgz: {local: tools.tar.gz}
`

func TestParseFiles(t *testing.T) {
	dir := t.TempDir()
	got, err := Parse("data.yaml", dir, []byte(filesFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Workflow{
		Name: "data",
		Dir:  dir,
		Files: []File{
			{Name: "words", Line: 3, Kind: URL, URL: "https://example.org/words.txt", Cache: "forever"},
			{Name: "tools", Line: 4, Kind: Local, Local: filepath.Join(dir, "tools.tar.gz"), Cache: "worker"},
			{Name: "toolbox", Line: 5, Kind: Unpack, Unpack: "tools", Format: "tar.gz"},
			{Name: "greeting", Line: 6, Kind: Buffer, Buffer: []byte("hello\n"), Cache: "task"},
			{Name: "counts", Line: 7, Kind: Temp, Replicas: 2},
			{Name: "packed", Line: 8, Kind: Temp, Cache: "workflow"},
			{Name: "unpacked", Line: 9, Kind: Unpack, Unpack: "packed"},
			{Name: "mounted", Line: 10, Kind: URL, URL: "file:///data/ref", Cache: "worker"},
			{Name: "logo", Line: 11, Kind: Buffer, Buffer: []byte("hello")},
		},
		Tasks: []Task{
			{
				Name:    "count",
				Line:    13,
				Command: "bin/count words.txt > counts.txt 2> log.txt",
				Inputs: []Input{
					{Name: "bin", File: "toolbox", Producer: -1},
					{Name: "hi.txt", File: "greeting", Producer: -1},
					{Name: "inline.txt", Buffer: []byte("x"), Producer: -1},
					{Name: "words.txt", File: "words", Producer: -1},
				},
				Outputs: []Output{
					{Name: "counts.txt", File: "counts"},
					{Name: "log.txt", Local: filepath.Join(dir, "out/log.txt")},
				},
				Retries: DefaultRetries,
			},
			{
				Name:    "pack",
				Line:    23,
				Command: "tar czf p.tgz /etc/hostname",
				Outputs: []Output{{Name: "p.tgz", File: "packed"}},
				Retries: DefaultRetries,
			},
			{
				Name:    "report",
				Line:    27,
				Command: "cat c.txt log.txt",
				Inputs: []Input{
					{Name: "c.txt", File: "counts", Producer: 0},
					{Name: "dir", File: "unpacked", Producer: 1},
					{Name: "log.txt", Local: filepath.Join(dir, "out/log.txt"), Producer: 0},
					{Name: "ref", File: "mounted", Producer: -1},
				},
				Retries: DefaultRetries,
				After:   []int{0, 1},
			},
			{
				Name:    "again",
				Line:    34,
				Command: "cat c.txt",
				Inputs: []Input{
					{Name: "c.txt", File: "counts", Producer: 0},
					{Name: "img", File: "logo", Producer: -1},
					{Name: "tools.tgz", Local: filepath.Join(dir, "tools.tar.gz"), Producer: -1},
				},
				Retries: DefaultRetries,
				After:   []int{0},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestFileOrder(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		wantFiles []string
		wantAfter [][]int
	}{
		{
			name:      "files after tasks",
			yaml:      "tasks:\n- {name: b, command: c, inputs: {x: {file: t}}}\n- {name: a, command: c, outputs: {x: {file: t}}}\nfiles:\n  t: {temp: true}\n",
			wantFiles: []string{"t"},
			wantAfter: [][]int{{1}, nil},
		},
		{
			name: "unpack of a file declared later",
			yaml: "files:\n  d: {unpack: z}\n  c: {unpack: d}\n  z: {temp: true}\n" +
				"tasks:\n- {name: a, command: c, outputs: {x: {file: z}}}\n- {name: b, command: c, inputs: {x: {file: c}}}\n",
			wantFiles: []string{"d", "c", "z"},
			wantAfter: [][]int{nil, {0}},
		},
		{
			name:      "declared but unused",
			yaml:      "files:\n  t: {temp: true}\n  u: {url: 'http://h/u'}\ntasks:\n- {name: a, command: c}\n",
			wantFiles: []string{"t", "u"},
			wantAfter: [][]int{nil},
		},
		{
			name:      "empty files section",
			yaml:      "files:\ntasks:\n- {name: a, command: c}\n",
			wantFiles: nil,
			wantAfter: [][]int{nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", "/base", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var files []string
			for _, f := range w.Files {
				files = append(files, f.Name)
			}
			var after [][]int
			for _, task := range w.Tasks {
				after = append(after, task.After)
			}
			if diff := cmp.Diff(tc.wantFiles, files); diff != "" {
				t.Errorf("files mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAfter, after); diff != "" {
				t.Errorf("After mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	const task = "tasks:\n- {name: a, command: c}\n"
	tests := []struct {
		name string
		yaml string
		want string // the error's text, lines joined with newlines
	}{
		{
			name: "files not a mapping",
			yaml: "files: [a]\n" + task,
			want: `wf.yaml:1:8: files: want a mapping of file names to files, got a list`,
		},
		{
			name: "duplicate file name",
			yaml: "files:\n  w: {temp: true}\n  w: {temp: true}\n" + task,
			want: `wf.yaml:3:3: files: duplicate key "w" (first at line 2)`,
		},
		{
			name: "invalid file names",
			yaml: "files:\n  a b: {temp: true}\n  " + "x12345678901234567890123456789012345678901234567890123456789012345" + ": {temp: true}\n" + task,
			want: `wf.yaml:2:3: invalid file name "a b": want 1 to 64 of A-Z a-z 0-9 _ . -` + "\n" +
				`wf.yaml:3:3: invalid file name "x12345678901234567890123456789012345678901234567890123456789...": want 1 to 64 of A-Z a-z 0-9 _ . -`,
		},
		{
			name: "file not a mapping",
			yaml: "files:\n  w: https://example.org/w\n  v:\n" + task,
			want: `wf.yaml:2:6: file "w": want a mapping with one of "local", "buffer", "url", "unpack" or "temp", got "https://example.org/w"` + "\n" +
				`wf.yaml:3:5: file "v": want a mapping with one of "local", "buffer", "url", "unpack" or "temp", got nothing`,
		},
		{
			name: "no kind",
			yaml: "files:\n  w: {cache: task}\n" + task,
			want: `wf.yaml:2:6: file "w": want one of "local", "buffer", "url", "unpack" or "temp"`,
		},
		{
			name: "two kinds",
			yaml: "files:\n  w: {local: a, url: 'http://h/a', temp: true}\n" + task,
			want: `wf.yaml:2:17: file "w": want only one of "local", "buffer", "url", "unpack" or "temp", got "local" and "url"` + "\n" +
				`wf.yaml:2:36: file "w": want only one of "local", "buffer", "url", "unpack" or "temp", got "local" and "temp"`,
		},
		{
			name: "unknown field with suggestion",
			yaml: "files:\n  w: {url: 'http://h/a', cahce: task}\n  v: {tmp: true}\n" + task,
			want: `wf.yaml:2:26: file "w": unknown field "cahce" (did you mean "cache"?)` + "\n" +
				`wf.yaml:3:7: file "v": unknown field "tmp" (did you mean "temp"?)`,
		},
		{
			name: "bad cache levels",
			yaml: "files:\n  w: {temp: true, cache: forver}\n  v: {temp: true, cache: 3}\n  u: {temp: true, cache: [task]}\n" + task,
			want: `wf.yaml:2:26: file "w": cache: want "task", "workflow", "worker" or "forever", got "forver" (did you mean "forever"?)` + "\n" +
				`wf.yaml:3:26: file "v": cache: want "task", "workflow", "worker" or "forever", got "3"` + "\n" +
				`wf.yaml:4:26: file "u": cache: want a string, got a list`,
		},
		{
			name: "bad replicas",
			yaml: "files:\n  w: {url: 'http://h/a', replicas: 2}\n  v: {temp: true, replicas: 0}\n  u: {temp: true, replicas: two}\n" + task,
			want: `wf.yaml:2:26: file "w": replicas: only temp files have replicas` + "\n" +
				`wf.yaml:3:29: file "v": replicas: must be at least 1, got 0` + "\n" +
				`wf.yaml:4:29: file "u": replicas: want an integer, got "two"`,
		},
		{
			name: "bad formats",
			yaml: "files:\n  a: {temp: true, format: tar}\n  w: {unpack: a, format: rar}\n  v: {unpack: a, format: tar.gx}\n  u: {unpack: a, format: }\n" + task,
			want: `wf.yaml:2:19: file "a": format: only unpacked files have a format` + "\n" +
				`wf.yaml:3:26: file "w": format: want "tar", "tar.gz" or "zip", got "rar" (did you mean "tar"?)` + "\n" +
				`wf.yaml:4:26: file "v": format: want "tar", "tar.gz" or "zip", got "tar.gx" (did you mean "tar.gz"?)` + "\n" +
				`wf.yaml:5:26: file "u": format: want a string, got nothing`,
		},
		{
			name: "bad temp values",
			yaml: "files:\n  w: {temp: false}\n  v: {temp: yes}\n" + task,
			want: `wf.yaml:2:13: file "w": temp: want true, got false` + "\n" +
				`wf.yaml:3:13: file "v": temp: want true or false, got "yes"`,
		},
		{
			name: "bad urls",
			yaml: "files:\n" +
				"  a: {url: 'ftp://h/a'}\n" +
				"  b: {url: example.org/b}\n" +
				"  c: {url: 'http:///c'}\n" +
				"  d: {url: 'file:data/d'}\n" +
				"  e: {url: 'file://server/e'}\n" +
				"  f: {url: 'http://h/%zz'}\n" +
				"  g: {url: 'HTTPS://h/g', cache: worker}\n" +
				"  h: {url: 'file://localhost/h'}\n" + task,
			want: `wf.yaml:2:12: file "a": url: unsupported scheme "ftp" in "ftp://h/a": want http, https or file` + "\n" +
				`wf.yaml:3:12: file "b": url: want an http, https or file URL, got "example.org/b"` + "\n" +
				`wf.yaml:4:12: file "c": url: "http:///c" has no host` + "\n" +
				`wf.yaml:5:12: file "d": url: "file:data/d": want an absolute path on the worker, as in "file:///data/words.txt"` + "\n" +
				`wf.yaml:6:12: file "e": url: "file://server/e": want an absolute path on the worker, as in "file:///data/words.txt"` + "\n" +
				`wf.yaml:7:12: file "f": url: want an http, https or file URL, got "http://h/%zz"`,
		},
		{
			name: "bad local and buffer",
			yaml: "files:\n  a: {local: ''}\n  b: {buffer: [x]}\n  c: {buffer: !!binary '#'}\n" + task,
			want: `wf.yaml:2:14: file "a": local: path must not be empty` + "\n" +
				`wf.yaml:3:15: file "b": buffer: want a string, got a list` + "\n" +
				`wf.yaml:4:15: file "c": buffer: invalid base64 data`,
		},
		{
			name: "unpack of unknown files",
			yaml: "files:\n  tools: {local: t.tgz}\n  a: {unpack: tols}\n  b: {unpack: zzz}\n  c: {unpack: [tools]}\n" + task,
			want: `wf.yaml:3:15: file "a": unpack: unknown file "tols" (did you mean "tools"?)` + "\n" +
				`wf.yaml:4:15: file "b": unpack: unknown file "zzz"` + "\n" +
				`wf.yaml:5:15: file "c": unpack: want a file name, got a list`,
		},
		{
			name: "unpack loops",
			yaml: "files:\n  self: {unpack: self}\n  in: {unpack: b}\n  a: {unpack: c}\n  b: {unpack: a}\n  c: {unpack: b}\n" + task,
			want: `wf.yaml:2:18: file "self": unpack: a file cannot unpack itself` + "\n" +
				`wf.yaml:4:15: file "a": unpack: loop: a -> c -> b -> a`,
		},
		{
			name: "bad file references in inputs",
			yaml: "files:\n  words: {url: 'http://h/w'}\n" +
				"tasks:\n- name: a\n  command: c\n  inputs:\n" +
				"    w: {file: wrds}\n" +
				"    x: {file: words, local: x}\n" +
				"    y: {file: [words]}\n" +
				"    z: {file: }\n" +
				"    v: {fiel: words}\n",
			want: `wf.yaml:7:15: task "a": input "w": unknown file "wrds" (did you mean "words"?)` + "\n" +
				`wf.yaml:8:8: task "a": input "x": want only one of "local", "buffer" or "file"` + "\n" +
				`wf.yaml:9:15: task "a": input "y": file: want a file name, got a list` + "\n" +
				`wf.yaml:10:15: task "a": input "z": file: want a file name, got nothing` + "\n" +
				`wf.yaml:11:9: task "a": input "v": unknown field "fiel" (did you mean "file"?)`,
		},
		{
			name: "bad outputs",
			yaml: "files:\n  words: {url: 'http://h/w'}\n  counts: {temp: true}\n" +
				"tasks:\n- name: a\n  command: c\n  outputs:\n" +
				"    w: {file: words}\n" +
				"    x: {file: cnts}\n" +
				"    y: {}\n" +
				"    z: {local: out/z}\n" +
				"    v: [x]\n" +
				"    u:\n",
			want: `wf.yaml:8:15: task "a": output "w": file "words" is not a temp file: only temp files can be outputs` + "\n" +
				`wf.yaml:9:15: task "a": output "x": unknown file "cnts" (did you mean "counts"?)` + "\n" +
				`wf.yaml:10:8: task "a": output "y": missing required field "file"` + "\n" +
				`wf.yaml:11:9: task "a": output "z": unknown field "local"` + "\n" +
				`wf.yaml:12:8: task "a": output "v": want a path or a mapping with "file", got a list` + "\n" +
				`wf.yaml:13:7: task "a": output "u": want a path or a mapping with "file", got nothing`,
		},
		{
			name: "two tasks write one temp file",
			yaml: "files:\n  t: {temp: true}\n" +
				"tasks:\n- {name: a, command: c, outputs: {x: {file: t}}}\n- {name: b, command: c, outputs: {y: {file: t}}}\n",
			want: `wf.yaml:5:45: task "b": output "y": temp file "t" is also written by task "a" (line 4)`,
		},
		{
			name: "one task writes a temp file twice",
			yaml: "files:\n  t: {temp: true}\n" +
				"tasks:\n- name: a\n  command: c\n  outputs:\n    x: {file: t}\n    y: {file: t}\n",
			want: `wf.yaml:8:15: task "a": output "y": temp file "t" is also written by output "x"`,
		},
		{
			name: "temp file that no task writes",
			yaml: "files:\n  t: {temp: true}\n  u: {unpack: t}\n" +
				"tasks:\n- name: y\n  command: c\n  inputs:\n    a: {file: t}\n    b: {file: t}\n    c: {file: u}\n" +
				"- {name: z, command: c, inputs: {d: {file: u}}}\n",
			want: `wf.yaml:8:15: temp file "t" is read by task "y" but no task writes it` + "\n" +
				`wf.yaml:11:44: temp file "t" is read by task "z" but no task writes it`,
		},
		{
			name: "task reads its own temp output",
			yaml: "files:\n  t: {temp: true}\n  u: {unpack: t}\n" +
				"tasks:\n- name: a\n  command: c\n  inputs:\n    i: {file: t}\n    j: {file: u}\n  outputs:\n    o: {file: t}\n",
			want: `wf.yaml:8:15: task "a": input "i": reads its own output, temp file "t"` + "\n" +
				`wf.yaml:9:15: task "a": input "j": reads its own output, temp file "t"`,
		},
		{
			name: "cycle through temp files",
			yaml: "files:\n  t: {temp: true}\n  u: {temp: true}\n  d: {unpack: u}\n" +
				"tasks:\n- {name: a, command: c, inputs: {i: {file: d}}, outputs: {o: {file: t}}}\n" +
				"- {name: b, command: c, inputs: {i: {file: t}}, outputs: {o: {file: u}}}\n",
			want: `wf.yaml:6:3: cycle: a -> b -> a`,
		},
		{
			name: "declared local file that a task writes",
			yaml: "files:\n  l: {local: out/x.tgz}\n  m: {local: out/d/f}\n" +
				"tasks:\n- {name: a, command: c, outputs: {x: out/x.tgz, d: out/d}}\n",
			want: `wf.yaml:2:14: file "l": local: path "out/x.tgz" is written by task "a" (line 5); declare a temp file for data that tasks pass on` + "\n" +
				`wf.yaml:3:14: file "m": local: path "out/d/f" is written by task "a" (line 5); declare a temp file for data that tasks pass on`,
		},
		{
			name: "no follow-on errors from a bad declaration",
			yaml: "files:\n  t: {temp: true, replicas: 0}\n  u: {unpack: t, format: rar}\n  v: {cache: task}\n" +
				"tasks:\n- {name: a, command: c, inputs: {i: {file: t}, j: {file: u}, k: {file: v}}, outputs: {o: {file: v}}}\n",
			want: `wf.yaml:2:29: file "t": replicas: must be at least 1, got 0` + "\n" +
				`wf.yaml:3:26: file "u": format: want "tar", "tar.gz" or "zip", got "rar" (did you mean "tar"?)` + "\n" +
				`wf.yaml:4:6: file "v": want one of "local", "buffer", "url", "unpack" or "temp"`,
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

// Temp files are pruned with the workflow's prune_depth unless they set
// their own or are kept.
func TestParsePruning(t *testing.T) {
	const src = `prune_depth: 2
files:
  a: {temp: true}
  b: {temp: true, prune_depth: 0}
  c: {temp: true, keep: true}
tasks:
  - name: w
    command: echo > a; echo > b; echo > c
    outputs: {a: {file: a}, b: {file: b}, c: {file: c}}
`
	w, err := Parse("wf.yaml", t.TempDir(), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []File{
		{Name: "a", Line: 3, Kind: Temp, PruneDepth: 2},
		{Name: "b", Line: 4, Kind: Temp},
		{Name: "c", Line: 5, Kind: Temp, Keep: true},
	}
	if diff := cmp.Diff(want, w.Files); diff != "" {
		t.Errorf("Files mismatch (-want +got):\n%s", diff)
	}
	const task = "tasks:\n- {name: a, command: c}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"keep on a url", "files:\n  w: {url: 'http://h/a', keep: true}\n" + task, `wf.yaml:2:26: file "w": keep: only temp files are kept or pruned`},
		{"depth out of range", "files:\n  v: {temp: true, prune_depth: 17}\n" + task, `wf.yaml:2:32: file "v": prune_depth: want 0 to 16, got 17`},
		{"keep and depth", "files:\n  v: {temp: true, keep: true, prune_depth: 1}\n" + task, `wf.yaml:2:31: file "v": prune_depth: a file with keep: true is not pruned; remove one of them`},
		{"top-level depth", "prune_depth: -1\n" + task, `wf.yaml:1:14: prune_depth: want 0 to 16, got -1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("wf.yaml", t.TempDir(), []byte(tc.yaml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse: got %v, want %s", err, tc.want)
			}
		})
	}
}
