package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The guard is a small process, one per worker, that kills the worker's
// process groups and cgroups when the worker is gone, however it went: the
// worker holds the only write end of a pipe to the guard's stdin, so when
// the worker dies, even by SIGKILL, the guard reads end of file. Until then
// the worker tells it, one line each:
//
//	pid N        the worker's pid, never killed (v1 kills go by pid)
//	v2 "DIR"     the worker's cgroup v2 (Go-quoted)
//	v1 "DIR"     the worker's cgroup in a v1 hierarchy (cpu, memory)
//	+N           process group N was started
//	-N           process group N is gone (sent before its leader is reaped)
//
// The guard has no parent-death signal of its own: it must outlive the
// worker by the moment it takes to clean up, and end of file is a surer
// sign than a signal tied to the thread that started it. It runs in a
// process group of its own and ignores SIGINT, SIGTERM and SIGHUP, so that
// the signals that drain a worker do not take the guard first.

// guardWait bounds how long the worker waits for its guard to exit after
// closing the pipe, and how long the guard tries to remove one cgroup.
const guardWait = 5 * time.Second

// guardWriteWait bounds a write to the guard: a guard that does not read
// (stopped, say) must not stall the worker once the pipe is full.
const guardWriteWait = time.Second

// guard is the worker's end of its guard process.
type guard struct {
	cmd  *exec.Cmd
	log  *slog.Logger
	mu   sync.Mutex // guards pipe and err
	pipe *os.File
	// err is the first failed write, the guard's exit while the worker
	// needs it (errGuardExited), or errGuardClosed.
	err error
	// exited is closed once the guard process has exited and been
	// reaped; waitErr is then what cmd.Wait returned.
	exited  chan struct{}
	waitErr error
}

var (
	errGuardClosed = errors.New("sandbox: guard closed")
	errGuardExited = errors.New("sandbox: guard process exited")
)

// startGuard starts the guard process and tells it the worker's cgroups.
func startGuard(argv []string, v2 string, v1 []string, log *slog.Logger) (*guard, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, err
	}
	g := &guard{cmd: cmd, log: log, pipe: w, exited: make(chan struct{})}
	go g.wait() // exits when the guard process exits
	hello := "pid " + strconv.Itoa(os.Getpid()) + "\n"
	if v2 != "" {
		hello += "v2 " + strconv.Quote(v2) + "\n"
	}
	for _, d := range v1 {
		hello += "v1 " + strconv.Quote(d) + "\n"
	}
	g.send(hello)
	return g, nil
}

// send writes one or more lines to the guard. A guard that is gone, or
// does not read, is reported once; the worker carries on without it.
func (g *guard) send(lines string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return
	}
	g.pipe.SetWriteDeadline(time.Now().Add(guardWriteWait))
	if _, err := g.pipe.WriteString(lines); err != nil {
		g.err = err
		g.log.Error("the guard process is gone or stuck: if this worker is killed, its tasks' processes will outlive it", "guard_pid", g.cmd.Process.Pid, "err", err)
	}
}

// wait reaps the guard process once it exits. An exit before close, the
// guard killed by the out-of-memory killer or an administrator, say, is
// logged, and alive reports false from then on: the processes started
// afterwards get the parent-death signal again.
func (g *guard) wait() {
	g.waitErr = g.cmd.Wait()
	g.mu.Lock()
	if g.err == nil {
		g.err = errGuardExited
		// Logged under the lock, as send does: once alive reports false,
		// the line is written.
		g.log.Error("the guard process exited while the worker runs: tasks started from now on get the parent-death signal instead, but if this worker is killed, the processes of the tasks already running will outlive it", "guard_pid", g.cmd.Process.Pid, "err", g.waitErr)
	}
	g.mu.Unlock()
	close(g.exited)
}

// alive reports whether the guard is there and hears the worker (it has
// not exited and no write to it failed); false for a nil guard. A process
// started once it is not gets the parent-death signal again.
func (g *guard) alive() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err == nil
}

// close closes the pipe, which tells the guard to clean up and exit, and
// waits for it to exit; after guardWait it kills it. A guard that had
// exited before is not an error here: wait logged it then.
func (g *guard) close() error {
	g.mu.Lock()
	prior := g.err
	g.pipe.Close()
	g.err = errGuardClosed
	g.mu.Unlock()
	switch prior {
	case errGuardExited:
		<-g.exited // at once: wait is done but for closing it
		return nil
	case errGuardClosed:
		return nil
	}
	t := time.NewTimer(2 * guardWait)
	defer t.Stop()
	select {
	case <-g.exited:
		if g.waitErr != nil {
			return fmt.Errorf("guard process: %w", g.waitErr)
		}
		return nil
	case <-t.C:
		g.cmd.Process.Kill()
		<-g.exited
		return fmt.Errorf("guard process did not exit within %v of the worker's close; killed", 2*guardWait)
	}
}

// ServeGuard is the main function of the guard process: it reads the
// worker's lines on stdin until end of file, then kills every process
// group it was told of that is not gone, and every process in the worker's
// cgroups, removes those cgroups, and returns the exit status (1 when
// something could not be removed; it says so on stderr).
func ServeGuard() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := guardLoop(os.Stdin, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "trellis guard: %v\n", err)
		return 1
	}
	return 0
}

// guardLoop is ServeGuard on r, reporting on logw what it killed.
func guardLoop(r io.Reader, logw io.Writer) error {
	type cgroupDir struct {
		path string
		v2   bool
	}
	var (
		spare  int
		dirs   []cgroupDir
		groups = make(map[int]bool)
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) == 0 {
			continue
		}
		switch {
		case line[0] == '+' || line[0] == '-':
			if n, err := strconv.Atoi(line[1:]); err == nil && n > 0 {
				if line[0] == '+' {
					groups[n] = true
				} else {
					delete(groups, n)
				}
			}
		case strings.HasPrefix(line, "pid "):
			spare, _ = strconv.Atoi(line[4:])
		case strings.HasPrefix(line, "v2 ") || strings.HasPrefix(line, "v1 "):
			if p, err := strconv.Unquote(line[3:]); err == nil {
				dirs = append(dirs, cgroupDir{p, line[1] == '2'})
			}
		}
	}
	// End of file, or a broken pipe: the worker is gone.
	for pgid := range groups {
		killGroup(pgid)
	}
	if len(groups) > 0 {
		fmt.Fprintf(logw, "trellis guard: worker %d is gone; killed what it left running (%d process groups)\n", spare, len(groups))
	}
	var err error
	for _, d := range dirs {
		err = errors.Join(err, removeCgroup(d.path, d.v2, spare, guardWait))
	}
	return err
}
