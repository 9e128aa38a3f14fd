package sandbox

import (
	"strings"
	"testing"
)

// TestLimitsCPU: a warden limits CPU exactly where Enforcement says that
// CPU quotas are enforced (whichever this machine allows); none without a
// warden.
func TestLimitsCPU(t *testing.T) {
	var none *Warden
	if none.LimitsCPU() {
		t.Errorf("no warden: LimitsCPU() = true; want false")
	}
	w, err := NewWarden(WardenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cpu, _ := w.Enforcement()
	if want := !strings.HasPrefix(cpu, "not enforced"); w.LimitsCPU() != want {
		t.Errorf("CPU quotas %q: LimitsCPU() = %v; want %v", cpu, w.LimitsCPU(), want)
	}
	t.Logf("CPU quotas here: %s", cpu)
}
