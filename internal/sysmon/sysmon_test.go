package sysmon

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"no GODEBUG", []string{"PATH=/bin", "HOME=/root"},
			[]string{"PATH=/bin", "HOME=/root", "GODEBUG=" + Setting, savedVar + "="}},
		{"GODEBUG kept after the setting", []string{"GODEBUG=gctrace=1", "PATH=/bin"},
			[]string{"PATH=/bin", "GODEBUG=" + Setting + ",gctrace=1", savedVar + "==gctrace=1"}},
		{"empty GODEBUG", []string{"GODEBUG="},
			[]string{"GODEBUG=" + Setting, savedVar + "=="}},
		{"run again already", []string{"GODEBUG=" + Setting, savedVar + "="}, nil},
		{"the user's schedtrace", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"off", []string{OffVar + "=off"}, nil},
		{"not off", []string{OffVar + "=on"}, []string{OffVar + "=on", "GODEBUG=" + Setting, savedVar + "="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, plan(tc.env)); diff != "" {
				t.Errorf("plan(%q) (-want +got):\n%s", tc.env, diff)
			}
		})
	}
}

func TestWorkerEnv(t *testing.T) {
	env := []string{"PATH=/bin"}
	for _, tc := range []struct {
		name           string
		env            []string
		workers, cores int
		want           []string
	}{
		{"one worker: the setting in place", env, 1, 2, []string{"PATH=/bin", "GODEBUG=" + Setting, savedVar + "="}},
		{"CrowdedPerCore per core", env, 2 * CrowdedPerCore, 2, []string{"PATH=/bin", "GODEBUG=" + Setting, savedVar + "="}},
		{"the user's schedtrace stands", []string{"GODEBUG=schedtrace=1000"}, 1, 2, []string{"GODEBUG=schedtrace=1000"}},
		{"one more", env, 2*CrowdedPerCore + 1, 2, []string{"PATH=/bin", OffVar + "=off"}},
		{"the user's on stands", []string{OffVar + "=on"}, 2*CrowdedPerCore + 1, 2, []string{OffVar + "=on", "GODEBUG=" + Setting, savedVar + "="}},
		{"the user's off stands", []string{OffVar + "=off"}, 2*CrowdedPerCore + 1, 2, []string{OffVar + "=off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := WorkerEnv(tc.env, tc.workers, tc.cores)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("WorkerEnv(%q, %d, %d) (-want +got):\n%s", tc.env, tc.workers, tc.cores, diff)
			}
			if again := plan(got); again != nil {
				t.Errorf("a worker started with %q would run itself again with %q", got, again)
			}
		})
	}
	// The caller's slice is not written into.
	base := make([]string, 1, 4)
	base[0] = "PATH=/bin"
	WorkerEnv(base, 2*CrowdedPerCore+1, 2)
	if got := base[:2][1]; got != "" {
		t.Errorf("WorkerEnv wrote %q into its argument's spare capacity", got)
	}
}

// TestChildEnv: a library is started with the setting, its own GODEBUG
// kept after it and saved for Restore; its own off or schedtrace stands.
func TestChildEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"the setting", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + Setting, savedVar + "="}},
		{"its GODEBUG kept", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=" + Setting + ",gctrace=1", savedVar + "==gctrace=1"}},
		{"its schedtrace stands", []string{"GODEBUG=schedtrace=1000"}, []string{"GODEBUG=schedtrace=1000"}},
		{"its off stands", []string{OffVar + "=off"}, []string{OffVar + "=off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ChildEnv(tc.env)); diff != "" {
				t.Errorf("ChildEnv(%q) (-want +got):\n%s", tc.env, diff)
			}
		})
	}
}

// TestRestore: a process started with the setting by ChildEnv puts GODEBUG
// back as its parent gave it, and says it was so started.
func TestRestore(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		started bool
		godebug string
		set     bool
	}{
		{"no GODEBUG", ChildEnv(nil), true, "", false},
		{"a GODEBUG", ChildEnv([]string{"GODEBUG=gctrace=1"}), true, "gctrace=1", true},
		{"an empty GODEBUG", ChildEnv([]string{"GODEBUG="}), true, "", true},
		{"not started with it", []string{"GODEBUG=gctrace=1"}, false, "gctrace=1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Unsetenv(savedVar)
			t.Setenv("GODEBUG", "")
			os.Unsetenv("GODEBUG")
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			if got := Restore(); got != tc.started {
				t.Errorf("Restore() = %v; want %v", got, tc.started)
			}
			godebug, set := os.LookupEnv("GODEBUG")
			if godebug != tc.godebug || set != tc.set {
				t.Errorf("GODEBUG after Restore: %q (set %v); want %q (set %v)", godebug, set, tc.godebug, tc.set)
			}
			if _, ok := os.LookupEnv(savedVar); ok {
				t.Errorf("%s still set after Restore", savedVar)
			}
		})
	}
}
