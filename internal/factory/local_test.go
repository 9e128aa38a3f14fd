package factory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis/internal/sysmon"
)

// TestLocalCrowded: on a host of one core, the workers started while
// fewer than sysmon.CrowdedPerCore run get the runtime monitor's setting
// in place, and the ones after have it off; a TRELLIS_SYSMON of the
// factory's own stands.
func TestLocalCrowded(t *testing.T) {
	for _, tc := range []struct{ name, own string }{
		{"default", ""},
		{"the factory's own setting", "on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sysmonEnv(t, tc.own)
			dir := t.TempDir()
			l := &Local{HostCores: 1, Grace: time.Second}
			n := sysmon.CrowdedPerCore + 2
			var names []string
			t.Cleanup(func() {
				for _, name := range names {
					l.Cancel(context.Background(), name)
				}
			})
			for i := range n {
				name := fmt.Sprintf("w%d", i)
				// Each job says what it was given and runs on, so that the
				// next counts it.
				script := envReport(filepath.Join(dir, name)) + " && exec sleep 30"
				if err := l.Submit(context.Background(), Job{Name: name, Command: []string{"/bin/sh", "-c", script}}); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			var got []string
			for _, name := range names {
				got = append(got, waitForFile(t, filepath.Join(dir, name)))
			}
			// Those not crowded get the setting in place (no re-exec);
			// the crowded ones are told off. A setting of the factory's
			// own stands for all.
			want := make([]string, n)
			for i := range want {
				switch {
				case tc.own != "":
					want[i] = tc.own + " " + sysmon.Setting
				case i < sysmon.CrowdedPerCore:
					want[i] = "unset " + sysmon.Setting
				default:
					want[i] = "off unset"
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("the jobs' %s: got %q, want %q", sysmon.OffVar, got, want)
			}
		})
	}
}

// TestLocalPlannedCrowded: where the factory may run more than
// sysmon.CrowdedPerCore workers per core (Planned, its --max), every
// worker it starts has the runtime monitor's setting off, the first too:
// on so crowded a host they are idle most of the time.
func TestLocalPlannedCrowded(t *testing.T) {
	sysmonEnv(t, "")
	dir := t.TempDir()
	for _, planned := range []int{sysmon.CrowdedPerCore, sysmon.CrowdedPerCore + 1} {
		l := &Local{HostCores: 1, Planned: planned, Grace: time.Second}
		name := fmt.Sprintf("planned%d", planned)
		out := filepath.Join(dir, name)
		if err := l.Submit(context.Background(), Job{Name: name, Command: []string{"/bin/sh", "-c", envReport(out)}}); err != nil {
			t.Fatal(err)
		}
		want := "unset " + sysmon.Setting
		if planned > sysmon.CrowdedPerCore {
			want = "off unset"
		}
		if got := waitForFile(t, out); got != want {
			t.Errorf("the first worker of %d planned on one core: %q; want %q", planned, got, want)
		}
	}
}

// sysmonEnv gives this test's process no GODEBUG and, unless own is "",
// TRELLIS_SYSMON=own (else none); both are restored after the test.
func sysmonEnv(t *testing.T, own string) {
	t.Setenv("GODEBUG", "")
	os.Unsetenv("GODEBUG")
	t.Setenv(sysmon.OffVar, own)
	if own == "" {
		os.Unsetenv(sysmon.OffVar)
	}
}

// envReport is a shell command that writes, to the file out at once,
// what a job was given: its TRELLIS_SYSMON and GODEBUG ("unset" if not).
func envReport(out string) string {
	return fmt.Sprintf(`printf %%s "${%s-unset} ${GODEBUG-unset}" > %s.tmp && mv %s.tmp %s`, sysmon.OffVar, out, out, out)
}

// waitForFile returns the file's contents once it exists, failing the test
// after 10 s.
func waitForFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in 10 s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
