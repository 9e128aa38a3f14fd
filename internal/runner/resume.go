package runner

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A `trellis run --manager` leaves a small state file while it runs: the
// manager, the workflow file (its absolute path and the digest of its
// bytes) and the session the run's tasks are in. A run that ends in any
// way but being killed (it finished, failed, or was interrupted and ended
// its session) removes it. A run started again on the same file against
// the same manager finds it, and when the file is unchanged it takes the
// session over (trellis.WithSession): the tasks that finished are not run
// again, and those that were running go on. The file is locked while its
// run lives (flock, which the kernel releases when the process dies,
// SIGKILL included), so that a second run of the same file against the
// same manager is refused while the first one lives.

// RunState is what a run leaves for the next run of its file.
type RunState struct {
	Manager string    `json:"manager"`
	File    string    `json:"file"`   // absolute path
	Digest  string    `json:"digest"` // sha256 of the file's bytes
	Session string    `json:"session"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// Start is how a run begins, decided by Decide.
type Start struct {
	Session string // the session to dial
	Resume  bool   // Session is a killed run's, to take over
	// EndOld names a killed run's session that is not taken over: its
	// unfinished tasks are to be cancelled. Note says why, for the user.
	EndOld string
	Note   string
}

// Decide says how a run of a workflow file (whose bytes have digest)
// begins, given what the last run left (nil: nothing), a fresh session
// name, and whether the user asked to start anew (--no-resume). It reads
// nothing and writes nothing.
func Decide(prev *RunState, digest, fresh string, noResume bool) Start {
	switch {
	case prev == nil || prev.Session == "":
		return Start{Session: fresh}
	case noResume:
		return Start{Session: fresh, EndOld: prev.Session,
			Note: fmt.Sprintf("not resuming session %s of a run killed before (--no-resume): its unfinished tasks are cancelled, and every task runs again", prev.Session)}
	case prev.Digest != digest:
		return Start{Session: fresh, EndOld: prev.Session,
			Note: fmt.Sprintf("%s changed since a run of it was killed (session %s): that run's unfinished tasks are cancelled, and every task runs again", prev.File, prev.Session)}
	}
	return Start{Session: prev.Session, Resume: true}
}

// ErrRunning is OpenRun's error when a run of the same file against the
// same manager lives.
var ErrRunning = errors.New("run refused")

// RunFile is a run's state file, locked while the run lives.
type RunFile struct {
	path                  string
	lock                  *os.File
	manager, file, digest string
	started               time.Time
}

// State is the state of this run, in session.
func (f *RunFile) State(session string) RunState {
	if f == nil {
		return RunState{Session: session}
	}
	return RunState{Manager: f.manager, File: f.file, Digest: f.digest, Session: session, PID: os.Getpid(), Started: f.started}
}

// StateDir is where runs leave their state files: $XDG_STATE_HOME/trellis/runs,
// or ~/.local/state/trellis/runs.
func StateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "trellis", "runs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the directory for run state: %w (set XDG_STATE_HOME)", err)
	}
	return filepath.Join(home, ".local", "state", "trellis", "runs"), nil
}

// OpenRun locks the state file of runs of file (an absolute path, whose
// bytes have digest) against manager, in dir, and returns it with what the
// last run left there (nil if nothing). A run of the same file against
// the same manager that still lives holds the lock: OpenRun then fails,
// naming it.
func OpenRun(dir, manager, file, digest string) (*RunFile, *RunState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("run state: %w", err)
	}
	sum := sha256.Sum256([]byte(manager + "\n" + file))
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+".json")
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("run state: %w", err)
	}
	prev, readErr := readRunState(path)
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another trellis run"
			if prev != nil {
				who += fmt.Sprintf(" (pid %d, started %s)", prev.PID, prev.Started.Local().Format(time.DateTime))
			}
			return nil, nil, fmt.Errorf("%w: %s is running %s against %s: wait for it to end, or stop it (a run killed with SIGKILL is resumed by the next)", ErrRunning, who, file, manager)
		}
		return nil, nil, fmt.Errorf("run state: lock %s: %w", path+".lock", err)
	}
	if readErr != nil {
		prev = nil // unreadable: as if there were none
	}
	return &RunFile{path: path, lock: lock, manager: manager, file: file, digest: digest, started: time.Now()}, prev, nil
}

func readRunState(path string) (*RunState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st RunState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// Save writes st, through a temporary file, so that a kill never leaves
// half of it. The methods of a nil RunFile (a run that keeps no state) do
// nothing.
func (f *RunFile) Save(st RunState) error {
	if f == nil {
		return nil
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	return nil
}

// Finish removes the state file (the run ended: nothing to resume) and
// releases the lock.
func (f *RunFile) Finish() error {
	if f == nil {
		return nil
	}
	err := os.Remove(f.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	f.Release()
	return err
}

// Release releases the lock, leaving the state file for the next run.
func (f *RunFile) Release() {
	if f != nil && f.lock != nil {
		f.lock.Close()
		f.lock = nil
	}
}

// NewSession returns a fresh session name for a run: "run-" and random
// hex, apart from the Go client's own "s-" names.
func NewSession() string {
	var b [12]byte
	rand.Read(b[:])
	return "run-" + hex.EncodeToString(b[:])
}

// FileDigest returns the sha256 of a file's bytes, as RunState.Digest.
func FileDigest(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
