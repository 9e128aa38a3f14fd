package sandbox

import (
	"os"
	"time"
)

// ioGrace bounds how long Run waits for stdout and stderr to reach end of
// file after the group was killed, where a run has pipes of its own. Only
// a process that left the group (and so survived the kill) while holding
// the pipes makes Run wait that long.
const ioGrace = time.Second

// outputs are where a run's stdout and stderr go and the buffers that keep
// their tails: pipes of the pool (outPool) where the run's cell contains
// every process of it, so that its end is known without end of file; else
// a pipe of its own per stream, drained by a goroutine each until end of
// file.
type outputs struct {
	stdout, stderr *tailBuffer
	outW, errW     *os.File // for the command

	pool   *outPool // nil: pipes of its own
	po, pe *outPipe

	outR, errR *os.File
	drained    chan struct{}
}

// openOutputs makes the outputs of a run that keeps limit bytes of each
// stream; pooled where the run's processes are contained by a cell.
func openOutputs(limit int, contained bool) (*outputs, error) {
	o := &outputs{stdout: newTailBuffer(limit), stderr: newTailBuffer(limit)}
	if contained {
		if p := pooledOutputs(); p != nil {
			po, err := p.get(o.stdout)
			if err != nil {
				return nil, err
			}
			pe, err := p.get(o.stderr)
			if err != nil {
				p.put(po, true)
				return nil, err
			}
			o.pool, o.po, o.pe, o.outW, o.errW = p, po, pe, po.w, pe.w
			return o, nil
		}
	}
	var err error
	if o.outR, o.outW, err = outputPipe(); err != nil {
		return nil, err
	}
	if o.errR, o.errW, err = outputPipe(); err != nil {
		o.outR.Close()
		o.outW.Close()
		return nil, err
	}
	return o, nil
}

// started is told whether the command started: pipes of its own are
// drained from now on (the command has its own copies of the write ends).
func (o *outputs) started(ok bool) {
	if o.pool != nil {
		if !ok {
			o.pool.put(o.po, true)
			o.pool.put(o.pe, true)
		}
		return
	}
	o.outW.Close()
	o.errW.Close()
	if !ok {
		o.outR.Close()
		o.errR.Close()
		return
	}
	o.drained = make(chan struct{}, 2)
	go drain(o.stdout, o.outR, o.drained) // exits at end of file, or when outR is closed by finish
	go drain(o.stderr, o.errR, o.drained) // likewise
}

// finish collects what the run wrote, once its processes are gone (or
// killed): pooled pipes are drained and, where emptied (no process of
// the run is left that could still write), taken back for reuse.
func (o *outputs) finish(emptied bool) {
	if o.pool != nil {
		o.pool.put(o.po, emptied)
		o.pool.put(o.pe, emptied)
		return
	}
	// Output written just before the exit is still in the pipes. Only a
	// process that left the group, and so survived the kill, can hold them
	// open longer: it is given ioGrace.
	t := time.NewTimer(ioGrace)
	for n := 0; n < 2; {
		select {
		case <-o.drained:
			n++
		case <-t.C:
			o.outR.Close() // ends the reads
			o.errR.Close()
		}
	}
	t.Stop()
}

// drain reads r into buf until end of file (or until r is closed), closes
// r, and says so on done.
func drain(buf *tailBuffer, r *os.File, done chan<- struct{}) {
	buf.ReadFrom(r)
	r.Close()
	done <- struct{}{}
}
