package proto

import (
	"errors"
	"math"
	"path"
	"strings"
	"testing"

	gproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

func okTask() *pb.TaskSpec {
	return &pb.TaskSpec{Name: "t", Command: "true",
		Inputs:    []*pb.FileRef{{Name: "sha256-ab", Path: "in/a.txt"}},
		Outputs:   []*pb.FileRef{{Name: "out-1", Path: "b.txt"}},
		Env:       []string{"A=1", "B="},
		Resources: &pb.Resources{Cores: 0.5, MemoryMb: 10}}
}

func TestCheckTask(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pb.TaskSpec)
		want   string // "" means valid
	}{
		{"valid", func(*pb.TaskSpec) {}, ""},
		{"empty command", func(s *pb.TaskSpec) { s.Command = "  " }, "empty command"},
		{"huge command", func(s *pb.TaskSpec) { s.Command = strings.Repeat("x", MaxCommandBytes+1) }, "over the limit"},
		{"absolute input", func(s *pb.TaskSpec) { s.Inputs[0].Path = "/etc/passwd" }, `"/etc/passwd" escapes the sandbox: it is absolute`},
		{"dotdot input", func(s *pb.TaskSpec) { s.Inputs[0].Path = "a/../../x" }, `escapes the sandbox: it has a ".." element`},
		{"sandbox itself", func(s *pb.TaskSpec) { s.Outputs[0].Path = "./" }, "names the sandbox itself"},
		{"nul", func(s *pb.TaskSpec) { s.Outputs[0].Path = "a\x00b" }, "NUL"},
		{"bad cache name", func(s *pb.TaskSpec) { s.Inputs[0].Name = "../x" }, `cache name "../x"`},
		{"dot cache name", func(s *pb.TaskSpec) { s.Inputs[0].Name = ".hidden" }, "not starting with '.'"},
		{"input and output at one path", func(s *pb.TaskSpec) { s.Outputs[0].Path = "in//a.txt" }, ""},
		{"two inputs at one path", func(s *pb.TaskSpec) {
			s.Inputs = append(s.Inputs, &pb.FileRef{Name: "sha256-cd", Path: "in/./a.txt"})
		}, `two inputs at sandbox path "in/a.txt" (given as "in/a.txt" and "in/./a.txt")`},
		{"two outputs at one path", func(s *pb.TaskSpec) {
			s.Outputs = append(s.Outputs, &pb.FileRef{Name: "out-2", Path: "b.txt"})
		}, `two outputs at sandbox path "b.txt"`},
		{"bad env", func(s *pb.TaskSpec) { s.Env = []string{"NOEQUALS"} }, "want KEY=VALUE"},
		{"negative memory", func(s *pb.TaskSpec) { s.Resources.MemoryMb = -1 }, "must not be negative"},
		{"nan cores", func(s *pb.TaskSpec) { s.Resources.Cores = math.NaN() }, "cores NaN"},
		{"negative retries", func(s *pb.TaskSpec) { s.Retries = -1 }, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := okTask()
			tc.mutate(spec)
			err := CheckTask(spec)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckTask = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckTask = %v, want an error containing %q", err, tc.want)
			case err != nil && !errors.Is(err, ErrInvalid):
				t.Fatalf("CheckTask = %v, does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestCheckSubmitAfter(t *testing.T) {
	req := &pb.SubmitRequest{Tasks: []*pb.TaskSpec{okTask(), okTask()}}
	req.Tasks[1].After = []uint32{0}
	if err := CheckSubmit(req); err != nil {
		t.Fatalf("valid after: %v", err)
	}
	for _, after := range [][]uint32{{1}, {2}} {
		req.Tasks[1].After = after
		if err := CheckSubmit(req); err == nil {
			t.Errorf("after %v accepted", after)
		}
	}
}

func TestCheckHello(t *testing.T) {
	good := &pb.Hello{Protocol: Protocol, Name: "w", Resources: &pb.Resources{Cores: 2, Gpus: 1}, Gpus: []int32{0}}
	if err := CheckHello(good); err != nil {
		t.Fatalf("good hello: %v", err)
	}
	for name, h := range map[string]*pb.Hello{
		"nil":                   nil,
		"old protocol":          {Protocol: Protocol + 1},
		"gpu mismatch":          {Protocol: Protocol, Resources: &pb.Resources{Gpus: 2}, Gpus: []int32{0}},
		"name not utf-8":        {Protocol: Protocol, Name: "w\xff"},
		"incarnation not utf-8": {Protocol: Protocol, Name: "w", Incarnation: "\xc0"},
	} {
		if err := CheckHello(h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzCheckSandboxPath: whatever is accepted stays inside the sandbox.
func FuzzCheckSandboxPath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "a/../../b", "/etc", "./a", "a//b", "", ".", "..", "x\x00y", "a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckSandboxPath(p) != nil {
			return
		}
		c := path.Clean(p)
		if path.IsAbs(c) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
			t.Fatalf("accepted %q, which cleans to %q", p, c)
		}
		if strings.IndexByte(p, 0) >= 0 {
			t.Fatalf("accepted %q with a NUL", p)
		}
	})
}

// FuzzCheckSubmit: validation never panics on any decodable message, and what
// it accepts has only safe names and paths.
func FuzzCheckSubmit(f *testing.F) {
	seed, _ := gproto.Marshal(&pb.SubmitRequest{Session: "s", Tasks: []*pb.TaskSpec{okTask()}})
	f.Add(seed)
	f.Add([]byte{0x1a, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.SubmitRequest
		if gproto.Unmarshal(b, &req) != nil {
			return
		}
		if CheckSubmit(&req) != nil {
			return
		}
		for _, task := range req.Tasks {
			for _, f := range append(task.Inputs, task.Outputs...) {
				if CheckCacheName(f.Name) != nil || CheckSandboxPath(f.Path) != nil {
					t.Fatalf("accepted a task with file %q at %q", f.Name, f.Path)
				}
			}
		}
	})
}

// FuzzCheckCacheName: an accepted cache name is a single safe path element,
// so that a cache or store can use it as a file name as it is.
func FuzzCheckCacheName(f *testing.F) {
	for _, s := range []string{"sha256-ab", "dir-00", "tmp-1", "..", ".", "a/b", "", "x\x00", ".hidden", "url-é", strings.Repeat("a", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckCacheName(name) != nil {
			return
		}
		if strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".") || len(name) > MaxNameBytes {
			t.Fatalf("accepted %q", name)
		}
		if path.Clean(name) != name || path.Base(name) != name {
			t.Fatalf("accepted %q, which is not one clean path element", name)
		}
	})
}
