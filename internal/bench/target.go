package bench

import (
	"context"

	"trellis"
	"trellis/local"
)

// Target says where a benchmark runs: an embedded cluster of Workers local
// workers, started for the run and stopped after it, or the running
// cluster Client is connected to (`--manager`), which it leaves running.
type Target struct {
	Workers int
	Client  *trellis.Client // a running cluster; nil starts an embedded one
	Manager string          // Client's manager address, reported
	// CheckpointDir: the embedded manager's --checkpoint-dir ("": none).
	CheckpointDir string
}

// open returns the client to run on and what to call when done.
func (tg Target) open(ctx context.Context) (*trellis.Client, func(), error) {
	if tg.Client != nil {
		return tg.Client, func() {}, nil
	}
	c, err := local.Start(ctx, local.Config{Workers: tg.Workers, CheckpointDir: tg.CheckpointDir})
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}
