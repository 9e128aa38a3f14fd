package worker

import (
	"path"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/cache"
)

// outputPaths returns the sandbox paths of outs, cleaned, so that an input
// at one of them is known to be changed in place; nil when there are none.
func outputPaths(outs []*pb.FileRef) map[string]bool {
	if len(outs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(outs))
	for _, o := range outs {
		m[path.Clean(o.Path)] = true
	}
	return m
}

// checkInputs drops from the cache each input that the command changed
// through its hard link (cache.Check): no later task gets the changed
// bytes. The session reports what the cache dropped before it reports the
// attempt's end, so that the manager, which then stages the file again,
// sends no task here that counts on the dropped copy.
// who names the task or library instance for the log.
func (w *Worker) checkInputs(stamps []cache.Stamp, who ...any) {
	for _, s := range stamps {
		if err := w.cache.Check(s); err != nil {
			w.log.Warn("a command changed its input in the cache: dropped it, to be staged again",
				append(who, "err", err)...)
		}
	}
}
