//go:build !linux

package sandbox

import (
	"os"
	"time"
)

// ioGrace bounds how long collect waits for stdout and stderr to reach end
// of file after the group was killed. Only a process that left the group
// (and so survived the kill) while holding the pipes makes it wait that
// long.
const ioGrace = time.Second

// outputs are where a run's stdout and stderr go and the buffers that keep
// their tails: a pipe of the run's own per stream, drained by a goroutine
// each until end of file. No pipe outlives its run, so nothing a process
// of one run writes can reach another run's result.
type outputs struct {
	stdout, stderr *tailBuffer
	outW, errW     *os.File // for the command
	outR, errR     *os.File
	drained        chan struct{}
}

// openOutputs makes the outputs of a run that keeps limit bytes of each
// stream.
func openOutputs(limit int) (*outputs, error) {
	o := &outputs{stdout: newTailBuffer(limit), stderr: newTailBuffer(limit)}
	var err error
	if o.outR, o.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if o.errR, o.errW, err = os.Pipe(); err != nil {
		o.outR.Close()
		o.outW.Close()
		return nil, err
	}
	return o, nil
}

// files returns the descriptors the command's stdout and stderr get.
func (o *outputs) files() (stdout, stderr int) { return int(o.outW.Fd()), int(o.errW.Fd()) }

// started is told whether the command started: the pipes are drained from
// now on (the command has its own copies of the write ends).
func (o *outputs) started(ok bool) {
	o.outW.Close()
	o.errW.Close()
	if !ok {
		o.outR.Close()
		o.errR.Close()
		return
	}
	o.drained = make(chan struct{}, 2)
	go drain(o.stdout, o.outR, o.drained) // exits at end of file, or when outR is closed by collect
	go drain(o.stderr, o.errR, o.drained) // likewise
}

// collect returns what the run wrote, once its processes are gone (or
// killed): the tail of each stream and whether earlier bytes were dropped.
func (o *outputs) collect() (stdout, stderr []byte, outTrunc, errTrunc bool) {
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
	return o.stdout.Bytes(), o.stderr.Bytes(), o.stdout.Truncated(), o.stderr.Truncated()
}

// drain reads r into buf until end of file (or until r is closed), closes
// r, and says so on done.
func drain(buf *tailBuffer, r *os.File, done chan<- struct{}) {
	buf.ReadFrom(r)
	r.Close()
	done <- struct{}{}
}
