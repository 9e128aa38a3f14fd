package sandbox

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// trimSlack is how far a run's output file may hold more than the tail that
// is kept before the one sampler punches a hole over what lies before that
// tail (outputs.trim).
const trimSlack = 1 << 20

// outputs are where a run's stdout and stderr go: a file of the run's own
// per stream, with no name (O_TMPFILE in the sandbox directory, or one
// created and unlinked at once where that is refused), opened for
// appending, so that nothing but the run's processes, which inherit it,
// can ever write to it, and nothing one run writes can reach another's
// result. No goroutine reads them and no poller watches them: once the run
// is over, the last limit bytes of each are read (outputs.collect), and a
// process that escaped the run and still holds one writes only into the
// unnamed file of a finished run. While the run lasts, the one sampler
// bounds the disk they take (trim).
type outputs struct {
	limit int
	fd    [2]int   // stdout, stderr; -1 once closed
	size  [2]int64 // the sizes seen by the last trim
	log   *slog.Logger
	// noPunch: a hole could not be punched in this run's files; they grow
	// until the run ends.
	noPunch bool
}

// openOutputs makes the output files of a run in dir that keeps limit
// bytes of each stream; log (nil for none) hears once per process that
// holes cannot be punched in them.
func openOutputs(dir string, limit int, log *slog.Logger) (*outputs, error) {
	o := &outputs{limit: limit, fd: [2]int{-1, -1}, log: log}
	for i := range o.fd {
		fd, err := openOutputFile(dir)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("create a file with no name for the command's output in %s: %w", dir, err)
		}
		o.fd[i] = fd
	}
	return o, nil
}

// createUnlinked opens a new file in dir and removes its name at once, for
// where O_TMPFILE is refused.
func createUnlinked(dir string) (int, error) {
	for tries := 0; ; tries++ {
		name := dir + "/.trellis-output-" + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_APPEND|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
		if err == syscall.EEXIST && tries < 10 {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "create", Path: name, Err: err}
		}
		if err := syscall.Unlink(name); err != nil {
			syscall.Close(fd)
			return -1, &os.PathError{Op: "unlink", Path: name, Err: err}
		}
		return fd, nil
	}
}

// files returns the descriptors the command's stdout and stderr get.
func (o *outputs) files() (stdout, stderr int) { return o.fd[0], o.fd[1] }

// collect returns the last limit bytes of each stream, and whether more
// was written, and closes the files. Call it once the run's processes are
// gone (or killed), and no trim runs any more.
func (o *outputs) collect() (stdout, stderr []byte, outTrunc, errTrunc bool) {
	stdout, outTrunc = readTail(o.fd[0], o.limit)
	stderr, errTrunc = readTail(o.fd[1], o.limit)
	o.close()
	return stdout, stderr, outTrunc, errTrunc
}

// readTail reads the last limit bytes of the file fd, and reports whether
// it holds more. A hole punched before them (trim) is never read.
func readTail(fd, limit int) ([]byte, bool) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Size <= 0 {
		return nil, false
	}
	n := min(st.Size, int64(limit))
	buf := make([]byte, n)
	off, got := st.Size-n, 0
	for got < len(buf) {
		k, err := syscall.Pread(fd, buf[got:], off+int64(got))
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k == 0 {
			break // truncated meanwhile by a process still holding it
		}
		got += k
	}
	return buf[:got], st.Size > int64(limit)
}

// close closes the files that are still open.
func (o *outputs) close() {
	for i, fd := range o.fd {
		if fd >= 0 {
			syscall.Close(fd)
			o.fd[i] = -1
		}
	}
}

// punchRefused is set once a hole could not be punched in an output file,
// which is then said once in the log.
var punchRefused atomic.Bool

// trim bounds the disk the output files take while the run lasts: a file
// that holds more than trimSlack beyond the kept tail gets a hole punched
// over what lies before that tail (its size, and the offset the run's
// processes write at, stay as they are). It reports whether either file
// grew by more than a quarter of trimSlack since the last trim: fast
// enough to need the next trim soon. The one sampler calls it
// (sampler.go); never at the same time as collect.
func (o *outputs) trim() (fast bool) {
	for i, fd := range o.fd {
		var st syscall.Stat_t
		if fd < 0 || syscall.Fstat(fd, &st) != nil {
			continue
		}
		fast = fast || st.Size-o.size[i] > trimSlack/4
		o.size[i] = st.Size
		if o.noPunch || st.Blocks*512 <= int64(o.limit)+trimSlack {
			continue
		}
		align := max(int64(st.Blksize), 512)
		end := (st.Size - int64(o.limit)) / align * align
		if end <= 0 {
			continue
		}
		if err := punchHole(fd, end); err != nil {
			o.noPunch = true
			if !punchRefused.Swap(true) && o.log != nil {
				o.log.Warn("sandbox: cannot punch a hole in a task's output file (fallocate): a task's output files now grow with all it writes until it ends, though only the last bytes are kept; put the sandboxes on a file system that supports punching holes (ext4, xfs, btrfs, tmpfs) to bound them", "limit_bytes", o.limit, "err", err)
			}
		}
	}
	return fast
}
