package core

import "fmt"

// The catalog knows the files that tasks produce. A file not in it is
// external: the client supplied it, and it is available.

type fileState uint8

const (
	filePending fileState = iota + 1 // its producer has not succeeded yet
	fileReady
	fileFailed // its producer failed for good
)

type fileEntry struct {
	producer TaskID
	state    fileState
	why      string   // for fileFailed
	waiters  []TaskID // consumers waiting while pending
}

type catalog struct {
	files map[FileID]*fileEntry
}

func newCatalog() catalog { return catalog{files: make(map[FileID]*fileEntry)} }

// claim records that task id will produce outputs. A file has one producer.
func (c *catalog) claim(id TaskID, outputs []FileID) error {
	for _, f := range outputs {
		if e := c.files[f]; e != nil {
			return fmt.Errorf("output file %d is already produced by task %d", f, e.producer)
		}
	}
	for _, f := range outputs {
		c.files[f] = &fileEntry{producer: id, state: filePending}
	}
	return nil
}

// await registers t as a waiter on each of its pending inputs and returns
// how many it waits for, or a reason why it can never run.
func (c *catalog) await(t *task) (missing int32, why string) {
	for _, f := range t.spec.Inputs {
		e := c.files[f]
		switch {
		case e == nil || e.state == fileReady:
		case e.state == fileFailed:
			return 0, e.why
		case e.producer == t.spec.ID:
			return 0, fmt.Sprintf("task %d reads its own output file %d", t.spec.ID, f)
		default:
			e.waiters = append(e.waiters, t.spec.ID)
			missing++
		}
	}
	return missing, ""
}

// produced marks outputs ready and returns the tasks that waited for them.
func (c *catalog) produced(outputs []FileID) []TaskID {
	var woken []TaskID
	for _, f := range outputs {
		if e := c.files[f]; e != nil {
			e.state = fileReady
			woken = append(woken, e.waiters...)
			e.waiters = nil
		}
	}
	return woken
}

// failed marks outputs as never to be produced and returns their waiters.
func (c *catalog) failed(outputs []FileID, why string) []TaskID {
	var woken []TaskID
	for _, f := range outputs {
		if e := c.files[f]; e != nil {
			e.state = fileFailed
			e.why = why
			woken = append(woken, e.waiters...)
			e.waiters = nil
		}
	}
	return woken
}

// missing marks an external file as absent. A file that a task produces is
// left alone: its producer decides.
func (c *catalog) missing(f FileID, why string) {
	if e := c.files[f]; e == nil {
		c.files[f] = &fileEntry{state: fileFailed, why: why}
	}
}
