package core_test

import (
	"testing"

	"trellis/internal/core"
)

func TestProducer(t *testing.T) {
	one := res(1000, 100)
	c := core.New()
	for _, ev := range []core.Event{
		join(1, res(1000, 1000)),
		core.FilesDeclared{Files: []core.FileSpec{{ID: 7, Kind: core.External}}},
		submit(files(task(1, one), ids(7), ids(10, 11))),
		submit(files(task(2, one), nil, ids(12, 10))), // rejected: claims 10
		ok(1, 1, 1), // done and forgotten: its outputs keep their producer
	} {
		c.Step(ev)
	}
	type result struct {
		Task core.TaskID
		OK   bool
	}
	for _, tc := range []struct {
		file core.FileID
		want result
	}{
		{10, result{1, true}},
		{11, result{1, true}},
		{12, result{}}, // the rejected task claimed nothing
		{7, result{}},  // external
		{99, result{}}, // unknown
	} {
		id, ok := c.Producer(tc.file)
		if got := (result{id, ok}); got != tc.want {
			t.Errorf("Producer(%d) = %+v, want %+v", tc.file, got, tc.want)
		}
	}
}
