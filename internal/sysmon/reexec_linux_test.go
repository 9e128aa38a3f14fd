package sysmon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childVar makes the test binary a child that re-execs itself and tells
// what it then sees (TestMain).
const childVar = "SYSMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childVar) == "1" {
		Reexec()
		started, err := os.ReadFile("/proc/self/environ")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		godebug, set := os.LookupEnv("GODEBUG")
		_, saved := os.LookupEnv(savedVar)
		fmt.Printf("started with setting: %v\nGODEBUG: %q %v\nsaved: %v\n",
			bytes.Contains(started, []byte("GODEBUG="+Setting)), godebug, set, saved)
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
		{"no GODEBUG", nil, "started with setting: true\nGODEBUG: \"\" false\nsaved: false\n"},
		{"GODEBUG", []string{"GODEBUG=gctrace=0"}, "started with setting: true\nGODEBUG: \"gctrace=0\" true\nsaved: false\n"},
		{"off", []string{OffVar + "=off"}, "started with setting: false\nGODEBUG: \"\" false\nsaved: false\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); k != "GODEBUG" && k != OffVar && k != savedVar {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, childVar+"=1"), tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if string(out) != tc.want {
				t.Errorf("child said\n%s\nwant\n%s", out, tc.want)
			}
		})
	}
}
