// Package txnlog writes and reads the manager's transaction log: one JSON
// line per state change of a task or worker, with its time, for plots and
// post-mortems (trellis manager --txn-log FILE).
//
// A Writer is owned by one goroutine (the manager's loop): it buffers lines
// and writes them when its buffer fills or on Flush, which the loop calls
// once a second and when it stops; a crash loses at most that second. The
// first write error stops the log (Err says why): the manager goes on.
package txnlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"
	"unicode/utf8"
)

// Events, the Record.Event values.
const (
	TaskSubmitted = "task_submitted" // Name, Modality
	TaskPlaced    = "task_placed"    // Worker: placed there, where inputs must be brought (staging) before it runs there; a task with every input there has only its task_running
	TaskStaging   = "task_staging"   // Worker, Transfer, File, Route, Peer: an input of the task placed on Worker starts to travel there (one per input fetched for it; the first starts its staging)
	TaskRunning   = "task_running"   // Attempt, Worker, Cores, Modality: placed there (inputs staged, then run)
	TaskRequeued  = "task_requeued"  // Attempt, Worker, Reason: it waits again
	TaskDone      = "task_done"      // Attempt, Worker, Result, Reason, RunMs
	WorkerJoined  = "worker_joined"  // Worker, Cores, MemoryMB
	WorkerLeft    = "worker_left"    // Worker, Reason

	InstanceStarted = "instance_started" // Instance, Library, Attempt, Worker: sent to the worker
	InstanceReady   = "instance_ready"   // Instance, Library, Attempt, Worker: its set-up done, it takes calls
	InstanceEnded   = "instance_ended"   // Instance, Library, Attempt, Worker, Result, Reason

	TransferStarted = "transfer_started" // Transfer, File, Worker (to), Route, Peer (from a peer), Bytes (expected, 0 if unknown)
	TransferEnded   = "transfer_ended"   // Transfer, File, Worker, Route, Result ("success", "failed"), Bytes (moved), Reason
)

// Record is one line of the log.
type Record struct {
	Time     time.Time `json:"t"`
	Event    string    `json:"ev"`
	Task     uint64    `json:"task,omitempty"`
	Name     string    `json:"name,omitempty"`
	Modality string    `json:"modality,omitempty"` // "task" or "call"; on task_running "dataflow" too (see core.Tally)
	Attempt  uint32    `json:"attempt,omitempty"`
	Worker   string    `json:"worker,omitempty"`
	Result   string    `json:"result,omitempty"` // "success", "failed", "timed_out", ...
	Reason   string    `json:"reason,omitempty"`
	RunMs    int64     `json:"run_ms,omitempty"`
	Cores    float64   `json:"cores,omitempty"` // a worker's, or a task's request on task_running
	MemoryMB int64     `json:"memory_mb,omitempty"`
	Instance uint64    `json:"instance,omitempty"` // of a library
	Library  string    `json:"library,omitempty"`
	Transfer uint64    `json:"transfer,omitempty"` // ID of a transfer to a worker
	File     string    `json:"file,omitempty"`     // its cache name
	Route    string    `json:"route,omitempty"`    // "manager_to_worker", "peer_to_worker", "url_to_worker", "unpack"
	Peer     string    `json:"peer,omitempty"`     // the worker it comes from, on route peer_to_worker
	Bytes    int64     `json:"bytes,omitempty"`
}

// Writer appends records to a file.
type Writer struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte // a line being encoded
	err error
}

// Create opens path for appending (creating it), for a Writer.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("txnlog: open %s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	return &Writer{f: f, w: w}, nil
}

// Write appends r; after a write error it does nothing.
func (w *Writer) Write(r Record) {
	if w == nil || w.err != nil {
		return
	}
	w.buf = AppendJSON(w.buf[:0], r)
	w.buf = append(w.buf, '\n')
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("txnlog: write %s: %w", w.f.Name(), err)
	}
}

// Flush writes the buffered records to the file.
func (w *Writer) Flush() {
	if w == nil || w.err != nil || w.w.Buffered() == 0 {
		return
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("txnlog: write %s: %w", w.f.Name(), err)
	}
}

// Err is the error that stopped the log, if any.
func (w *Writer) Err() error { return w.err }

// Close flushes and closes the file.
func (w *Writer) Close() error {
	w.Flush()
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("txnlog: close %s: %w", w.f.Name(), err)
	}
	return w.err
}

// Read returns the records of a log, in order.
func Read(r io.Reader) ([]Record, error) {
	var out []Record
	dec := json.NewDecoder(r)
	for line := 1; ; line++ {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("txnlog: record %d: %w", line, err)
		}
		out = append(out, rec)
	}
}

// AppendJSON appends r as encoding/json writes it (the same bytes), by
// hand: the loop writes a record per state change, and reflection made
// that five times dearer.
func AppendJSON(b []byte, r Record) []byte {
	b = append(b, `{"t":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","ev":`...)
	b = appendString(b, r.Event)
	b = appendUint(b, `,"task":`, r.Task)
	b = appendField(b, `,"name":`, r.Name)
	b = appendField(b, `,"modality":`, r.Modality)
	b = appendUint(b, `,"attempt":`, uint64(r.Attempt))
	b = appendField(b, `,"worker":`, r.Worker)
	b = appendField(b, `,"result":`, r.Result)
	b = appendField(b, `,"reason":`, r.Reason)
	b = appendInt(b, `,"run_ms":`, r.RunMs)
	if r.Cores != 0 {
		b = append(b, `,"cores":`...)
		b = appendFloat(b, r.Cores)
	}
	b = appendInt(b, `,"memory_mb":`, r.MemoryMB)
	b = appendUint(b, `,"instance":`, r.Instance)
	b = appendField(b, `,"library":`, r.Library)
	b = appendUint(b, `,"transfer":`, r.Transfer)
	b = appendField(b, `,"file":`, r.File)
	b = appendField(b, `,"route":`, r.Route)
	b = appendField(b, `,"peer":`, r.Peer)
	b = appendInt(b, `,"bytes":`, r.Bytes)
	return append(b, '}')
}

func appendUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, key...), v)
}

// appendFloat writes f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 { // whole cores, mostly
		return strconv.AppendInt(b, int64(f), 10)
	}
	if a := math.Abs(f); a < 1e21 && (a >= 1e-6 || a == 0) && !math.IsNaN(f) {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	j, _ := json.Marshal(f) // exponents, and what JSON cannot hold (an error: nothing)
	return append(b, j...)
}

// appendString writes s as a JSON string, as encoding/json does (HTML
// characters escaped too); strings that need more than a plain copy go
// through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			j, _ := json.Marshal(s)
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
