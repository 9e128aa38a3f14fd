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
	msgs := []M{first}
	for {
		select {
		case m := <-ch:
			msgs = append(msgs, m)
		default:
			return SendBatched(msgs, wrap, send)
		}
	}
}

// SendBatched sends msgs in order, packing consecutive ones into batches
// (wrap makes one message of several) within the batch limits. It stops at
// the first error.
func SendBatched[M goproto.Message](msgs []M, wrap func([]M) M, send func(M) error) error {
	if len(msgs) == 0 {
		return nil
	}
	first, msgs := msgs[0], msgs[1:]
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
	for _, m := range msgs {
		n := goproto.Size(m)
		if len(batch) == MaxBatchMessages || size+n > MaxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, m)
		size += n
	}
	return flush()
}
