package proto

import (
	goproto "google.golang.org/protobuf/proto"
)

// Limits on one batch of stream messages. A batch stays far under
// MaxMessageBytes, whatever the size of the messages in it.
const (
	MaxBatchMessages = 1024
	MaxBatchBytes    = 4 << 20
)

// SendQueued sends first and then every message queued in ch right now, in
// order, packing consecutive ones into batches (wrap makes one message of
// several) within the batch limits, so that a burst costs one write instead
// of one per message. It never waits for more: under light load it sends
// first alone, adding no latency. It stops at the first error.
func SendQueued[M goproto.Message](first M, ch <-chan M, wrap func([]M) M, send func(M) error) error {
	batch := []M{first}
	size := goproto.Size(first)
	flush := func() error {
		var err error
		if len(batch) == 1 {
			err = send(batch[0])
		} else {
			err = send(wrap(batch))
		}
		clear(batch)
		batch, size = batch[:0], 0
		return err
	}
	for {
		var m M
		select {
		case m = <-ch:
		default:
			return flush()
		}
		n := goproto.Size(m)
		if len(batch) == MaxBatchMessages || size+n > MaxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, m)
		size += n
	}
}
