package main

import "testing"

func TestIsMakeflow(t *testing.T) {
	for path, want := range map[string]bool{
		"flow.mf": true, "dir/flow.makeflow": true, "x/Makeflow": true, "FLOW.MF": true,
		"wf.yaml": false, "wf.yml": false, "makeflow.yaml": false, "mf": false,
	} {
		if got := isMakeflow(path); got != want {
			t.Errorf("isMakeflow(%q) = %v, want %v", path, got, want)
		}
	}
}
