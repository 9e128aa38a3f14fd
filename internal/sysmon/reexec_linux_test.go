package sysmon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// childVar makes the test binary a child that re-execs itself and tells
// what it then sees (TestMain).
const childVar = "SYSMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childVar) == "comm" {
		os.Unsetenv(OffVar)
		Reexec()
		comm, _ := os.ReadFile("/proc/self/comm")
		fmt.Print(string(comm))
		os.Exit(0)
	}
	if os.Getenv(childVar) == "1" {
		Reexec()
		started, err := os.ReadFile("/proc/self/environ")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		godebug, set := os.LookupEnv("GODEBUG")
		_, saved := os.LookupEnv(savedVar)
		fmt.Printf("started with setting: %v\nGODEBUG: %q %v\nsaved: %v\nactive: %v\n",
			bytes.Contains(started, []byte("GODEBUG="+Setting)), godebug, set, saved, Active())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestReexec runs this test binary as a process that re-execs itself:
// the process runs with the setting, but sees GODEBUG (and passes it on)
// as it was started with.
func TestReexec(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no GODEBUG", nil, "started with setting: true\nGODEBUG: \"\" false\nsaved: false\nactive: true\n"},
		{"GODEBUG", []string{"GODEBUG=gctrace=0"}, "started with setting: true\nGODEBUG: \"gctrace=0\" true\nsaved: false\nactive: true\n"},
		{"off", []string{OffVar + "=off"}, "started with setting: false\nGODEBUG: \"\" false\nsaved: false\nactive: false\n"},
		{"the user's schedtrace", []string{"GODEBUG=schedtrace=100000"}, "started with setting: false\nGODEBUG: \"schedtrace=100000\" true\nsaved: false\nactive: false\n"},
		{"started by WorkerEnv", WorkerEnv(nil, 1, 1), "started with setting: true\nGODEBUG: \"\" false\nsaved: false\nactive: true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); k != "GODEBUG" && k != OffVar && k != savedVar {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, childVar+"=1"), tc.env...)
			// Standard output alone: with a schedtrace the runtime may print
			// a SCHED line to standard error.
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s%s", err, out, stderr.Bytes())
			}
			if string(out) != tc.want {
				t.Errorf("child said\n%s\nwant\n%s", out, tc.want)
			}
		})
	}
}

// TestReexecKeepsName: the process run again keeps its name (ps, top and
// pkill read it), not the "exe" of /proc/self/exe.
func TestReexecKeepsName(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childVar+"=comm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := filepath.Base(os.Args[0])
	if len(want) > 15 {
		want = want[:15] // the kernel keeps 15 bytes of a name
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("the process run again is named %q; want %q", got, want)
	}
}
