package worker

import "testing"

func TestProcsFor(t *testing.T) {
	for _, tt := range []struct {
		milliCores  int64
		procs, want int
	}{
		{1000, 2, 1},
		{1500, 4, 2},
		{250, 8, 1},
		{0, 8, 1},
		{16000, 8, 8},
		{8000, 8, 8},
		{8001, 16, 9},
	} {
		if got := ProcsFor(tt.milliCores, tt.procs); got != tt.want {
			t.Errorf("ProcsFor(%d millicores, %d procs) = %d; want %d", tt.milliCores, tt.procs, got, tt.want)
		}
	}
}
