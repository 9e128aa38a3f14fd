package sysmon

import (
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
