package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"trellis"
	"trellis/internal/certs"
)

// DagResult is the output of `trellis bench dag`.
type DagResult struct {
	Bench           string  `json:"bench"`
	Workers         int     `json:"workers"`
	Maps            int     `json:"maps"`
	Reduces         int     `json:"reduces"`
	MapMiB          int     `json:"map_mib"`
	Seconds         float64 `json:"seconds"`
	BytesViaManager int64   `json:"bytes_via_manager"` // to workers from the manager, plus uploads to it
	BytesPeer       int64   `json:"bytes_peer"`
	// BytesPrefetched: of BytesPeer, fetched while the consumer's last
	// producers ran (the manager's prefetch).
	BytesPrefetched int64   `json:"bytes_prefetched"`
	BytesTotal      int64   `json:"bytes_total"`
	TransferMiB     int     `json:"transfer_mib"` // size of the single transfer timed below
	PeerMBPerS      float64 `json:"peer_mb_per_s"`
	CpMBPerS        float64 `json:"cp_mb_per_s"`
	PeerVsCp        float64 `json:"peer_vs_cp"`
	Keep            bool    `json:"keep"`                // temp files kept, not pruned (--keep)
	Checkpoint      string  `json:"checkpoint"`          // how the temp files are kept: none (lineage), sync or async (--checkpoint)
	Checkpoints     int     `json:"checkpoints"`         // files checkpointed during the run (async ones may commit after it)
	Manager         string  `json:"manager,omitempty"`   // the running cluster it ran on (--manager); none: embedded
	LinkRate        string  `json:"link_rate,omitempty"` // the rate of each host's link, as the caller gave it (--link-rate)
	PeakCacheBytes  int64   `json:"peak_cache_bytes"`    // the most any worker's cache held at once
	BytesPruned     int64   `json:"bytes_pruned"`        // unlinked from workers once no task read them
}

// Dag runs the data workload on tg: maps map tasks each writing a mapMiB
// temp file, reduces reduce tasks each reading maps/reduces of them, and a
// final task gathering the (small) reduce outputs. Bytes moved are the
// differences of the manager's counters across the run. Then, on an
// embedded cluster, it times one large peer transfer between two worker
// caches, with the code workers use, against cp of the same bytes on the
// same disk (on a running cluster it cannot: transfer_mib is 0).
//
// keep declares the temp files with Keep, as every temp file was before
// pruning (#18): the caches then hold every map output until the end.
// linkRate is reported as given.
func Dag(ctx context.Context, tg Target, maps, reduces, mapMiB, transferMiB int, mapSeconds float64, keep bool, checkpoint, linkRate string, logf func(string, ...any)) (*DagResult, error) {
	var mapKeep trellis.Keep
	switch checkpoint {
	case "none":
		mapKeep = trellis.Lineage()
	case "sync":
		mapKeep = trellis.Checkpoint(trellis.CheckpointSync)
	case "async":
		mapKeep = trellis.Checkpoint(trellis.CheckpointAsync)
	default:
		return nil, fmt.Errorf("--checkpoint %s: want none, sync or async", checkpoint)
	}
	if maps%reduces != 0 {
		return nil, fmt.Errorf("maps (%d) must be a multiple of reduces (%d)", maps, reduces)
	}
	if tg.Client != nil {
		transferMiB = 0
	}
	res := &DagResult{Bench: "dag", Workers: tg.Workers, Maps: maps, Reduces: reduces, MapMiB: mapMiB, TransferMiB: transferMiB, Keep: keep, Checkpoint: checkpoint,
		Manager: tg.Manager, LinkRate: linkRate}
	c, done, err := tg.open(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	before, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	res.Workers = len(before.Workers)
	var tasks []*trellis.Task
	mapped := make([]*trellis.File, maps)
	for i := range mapped {
		mapped[i] = trellis.Temp()
		if keep {
			mapped[i].Keep()
		}
		cmd := fmt.Sprintf("yes 'map %d' | head -c %d > part", i, mapMiB<<20)
		if mapSeconds > 0 {
			cmd += fmt.Sprintf(" && sleep %g", mapSeconds) // a map that takes that long, for transfers to overlap
		}
		t := trellis.NewTask(cmd)
		t.Name = fmt.Sprintf("map-%d", i)
		t.Keep = mapKeep
		t.AddOutput(mapped[i], "part")
		tasks = append(tasks, t)
	}
	final := trellis.NewTask("cat r* > total")
	final.Name = "final"
	per := maps / reduces
	for r := range reduces {
		out := trellis.Temp()
		if keep {
			out.Keep()
		}
		t := trellis.NewTask("cat p* | cksum > sum")
		t.Name = fmt.Sprintf("reduce-%d", r)
		t.Keep = mapKeep
		for j := range per {
			t.AddInput(mapped[r*per+j], fmt.Sprintf("p%d", j))
		}
		t.AddOutput(out, "sum")
		final.AddInput(out, fmt.Sprintf("r%d", r))
		tasks = append(tasks, t)
	}
	final.AddOutput(trellis.Output(""), "total")
	tasks = append(tasks, final)
	logf("dag: %d maps of %d MiB, %d reduces, 1 final, on %d workers", maps, mapMiB, reduces, res.Workers)
	if res.Seconds, err = runAll(ctx, c, tasks); err != nil {
		return nil, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	res.BytesViaManager = st.BytesFromManager - before.BytesFromManager + st.BytesToManager - before.BytesToManager
	res.BytesPeer = st.BytesFromPeers - before.BytesFromPeers
	res.BytesPrefetched = st.BytesPrefetched - before.BytesPrefetched
	res.BytesTotal = res.BytesViaManager + res.BytesPeer + st.BytesFromURLs - before.BytesFromURLs
	res.BytesPruned = st.BytesPruned - before.BytesPruned
	res.Checkpoints = st.Checkpoints - before.Checkpoints
	for _, w := range st.Workers {
		res.PeakCacheBytes = max(res.PeakCacheBytes, w.PeakCache) // over the worker's life
	}
	if transferMiB == 0 {
		return res, nil
	}

	logf("timing one %d MiB peer transfer and cp of the same bytes", transferMiB)
	if res.PeerMBPerS, res.CpMBPerS, err = peerVsCopy(ctx, transferMiB); err != nil {
		return nil, err
	}
	res.PeerVsCp = res.PeerMBPerS / res.CpMBPerS
	return res, nil
}

// peerVsCopy moves one file of mib MiB from one worker cache to another
// over 127.0.0.1 (the peer server and fetcher workers use, digest checked),
// and copies the same file with cp on the same disk.
func peerVsCopy(ctx context.Context, mib int) (peer, cp float64, err error) {
	run, cp, err := peerTransfer(ctx, mib, false)
	return run.MBPerS, cp, err
}

// peerTransfer is peerVsCopy, over TLS when withTLS (as between the workers
// of a manager with TLS: a cluster CA signs the file server's certificate
// and the fetcher verifies it). Its CPU figure counts both ends, which
// share this process.
func peerTransfer(ctx context.Context, mib int, withTLS bool) (peer peerRun, cp float64, err error) {
	dir, err := os.MkdirTemp("", "trellis-bench-dag-")
	if err != nil {
		return peerRun{}, 0, err
	}
	defer os.RemoveAll(dir)
	caDir, caFile := "", ""
	if withTLS {
		caDir = filepath.Join(dir, "tls")
		caFile = filepath.Join(caDir, certs.CAFile)
	}
	p, err := newPeerSource(ctx, dir, mib, "127.0.0.1:0", "127.0.0.1", caDir)
	if err != nil {
		return peerRun{}, 0, err
	}
	p.serve()
	defer p.close()
	if peer, err = fetchPeer(ctx, dir, p.url("127.0.0.1", time.Minute), p.entry.Size, p.entry.Digest, caFile); err != nil {
		return peerRun{}, 0, err
	}

	start := time.Now()
	if err := exec.CommandContext(ctx, "cp", p.from.Path(peerName), filepath.Join(dir, "copy.bin")).Run(); err != nil {
		return peerRun{}, 0, err
	}
	cp = float64(p.entry.Size) / 1e6 / time.Since(start).Seconds()
	return peer, cp, nil
}
