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
