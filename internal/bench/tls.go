package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"trellis"
	"trellis/internal/certs"
)

// TLSConfig says what `trellis bench tls` measures.
type TLSConfig struct {
	Self        string // the trellis binary, run as manager and workers
	Tasks       int    // trivial tasks per round
	Workers     int    // worker processes, 1 core each
	Rounds      int    // rounds of each mode, alternating
	TransferMiB int    // the peer transfer timed in each round
}

// TLSResult is the output of `trellis bench tls`: every round of each
// mode, and the ratios of the medians (TLS ÷ plain; 1 costs nothing). The
// peer transfer's CPU seconds per GB (both ends: they share the process)
// are what TLS costs in CPU, a figure that other load on the machine
// hardly moves, unlike MB/s.
type TLSResult struct {
	Bench           string    `json:"bench"`
	Tasks           int       `json:"tasks"`
	Workers         int       `json:"workers"`
	Rounds          int       `json:"rounds"`
	TransferMiB     int       `json:"transfer_mib"`
	PlainTasksPerS  []float64 `json:"plain_tasks_per_s"`
	TLSTasksPerS    []float64 `json:"tls_tasks_per_s"`
	TasksTLSVsPlain float64   `json:"tasks_tls_vs_plain"`
	PlainPeerMBPerS []float64 `json:"plain_peer_mb_per_s"`
	TLSPeerMBPerS   []float64 `json:"tls_peer_mb_per_s"`
	PeerTLSVsPlain  float64   `json:"peer_tls_vs_plain"`
	PlainPeerCPU    []float64 `json:"plain_peer_cpu_s_per_gb"`
	TLSPeerCPU      []float64 `json:"tls_peer_cpu_s_per_gb"`
	// PeerCPUTLSVsPlain is the ratio of the CPU medians, TLS ÷ plain (above
	// 1: TLS costs more CPU per byte).
	PeerCPUTLSVsPlain float64 `json:"peer_cpu_tls_vs_plain"`
}

// TLS measures what TLS costs: trivial tasks through a manager process and
// worker processes over TCP on 127.0.0.1, plain and with --tls auto, and
// one peer transfer between worker caches, plain and over TLS with the
// cluster CA's certificates; the modes alternate, round by round, so that
// the machine's drift touches both alike.
func TLS(ctx context.Context, cfg TLSConfig, logf func(string, ...any)) (*TLSResult, error) {
	if cfg.Tasks < 1 || cfg.Workers < 1 || cfg.Rounds < 1 || cfg.TransferMiB < 1 {
		return nil, errors.New("bench tls: --tasks, --workers, --rounds and --transfer-mib must be positive")
	}
	res := &TLSResult{Bench: "tls", Tasks: cfg.Tasks, Workers: cfg.Workers, Rounds: cfg.Rounds, TransferMiB: cfg.TransferMiB}
	for r := range cfg.Rounds {
		for _, withTLS := range []bool{r%2 == 1, r%2 == 0} { // TLS first in every other round
			mode := map[bool]string{false: "plain", true: "TLS"}[withTLS]
			logf("round %d/%d, %s: %d tasks on %d worker processes", r+1, cfg.Rounds, mode, cfg.Tasks, cfg.Workers)
			perS, err := tasksOverTCP(ctx, cfg, withTLS)
			if err != nil {
				return nil, fmt.Errorf("bench tls: round %d, %s: %w", r+1, mode, err)
			}
			logf("round %d/%d, %s: one %d MiB peer transfer", r+1, cfg.Rounds, mode, cfg.TransferMiB)
			peer, _, err := peerTransfer(ctx, cfg.TransferMiB, withTLS)
			if err != nil {
				return nil, fmt.Errorf("bench tls: round %d, %s peer transfer: %w", r+1, mode, err)
			}
			if withTLS {
				res.TLSTasksPerS, res.TLSPeerMBPerS = append(res.TLSTasksPerS, perS), append(res.TLSPeerMBPerS, peer.MBPerS)
				res.TLSPeerCPU = append(res.TLSPeerCPU, peer.CPUPerGB)
			} else {
				res.PlainTasksPerS, res.PlainPeerMBPerS = append(res.PlainTasksPerS, perS), append(res.PlainPeerMBPerS, peer.MBPerS)
				res.PlainPeerCPU = append(res.PlainPeerCPU, peer.CPUPerGB)
			}
		}
	}
	res.TasksTLSVsPlain = median(res.TLSTasksPerS) / median(res.PlainTasksPerS)
	res.PeerTLSVsPlain = median(res.TLSPeerMBPerS) / median(res.PlainPeerMBPerS)
	res.PeerCPUTLSVsPlain = median(res.TLSPeerCPU) / median(res.PlainPeerCPU)
	return res, nil
}

// tasksOverTCP starts a manager process (with --tls auto when withTLS) and
// cfg.Workers worker processes that trust it, runs a warm-up, then
// cfg.Tasks `true` tasks, and stops them all.
func tasksOverTCP(ctx context.Context, cfg TLSConfig, withTLS bool) (float64, error) {
	dir, secret, secretFile, err := secretDir("trellis-bench-tls-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	manager := []string{cfg.Self, "manager", "--log-level", "error"}
	var trust []string
	if withTLS {
		tlsDir := filepath.Join(dir, "tls")
		manager = append(manager, "--tls", "auto", "--tls-dir", tlsDir)
		trust = []string{"--tls-ca", filepath.Join(tlsDir, certs.CAFile)}
	}
	m, addr, err := startManager(ctx, manager, secretFile)
	if err != nil {
		return 0, err
	}
	defer m.stop()
	var workers workerProcs
	defer func() { workers.stop() }()
	for i := range cfg.Workers {
		argv := append([]string{cfg.Self, "worker", addr, "--secret-file", secretFile, "--cores", "1", "--log-level", "error",
			"--name", "bench-" + strconv.Itoa(i+1), "--workdir", filepath.Join(dir, "w"+strconv.Itoa(i+1))}, trust...)
		w, err := startWorker(argv, cfg.Workers)
		if err != nil {
			return 0, err
		}
		workers = append(workers, w)
	}
	opts := []trellis.Option{trellis.WithSecret(secret)}
	if withTLS {
		tc, err := certs.Client(addr, trust[1], "")
		if err != nil {
			return 0, err
		}
		opts = append(opts, trellis.WithTLS(tc))
	}
	c, err := trellis.Dial(ctx, addr, opts...)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := waitConnected(ctx, c, m, cfg.Workers, 30*time.Second); err != nil {
		return 0, err
	}
	if _, err := runAll(ctx, c, trivialTasks(min(cfg.Tasks, 200))); err != nil {
		return 0, err
	}
	secs, err := runAll(ctx, c, trivialTasks(cfg.Tasks))
	if err != nil {
		return 0, err
	}
	return float64(cfg.Tasks) / secs, nil
}

func trivialTasks(n int) []*trellis.Task {
	tasks := make([]*trellis.Task, n)
	for i := range tasks {
		tasks[i] = trellis.NewTask("true")
	}
	return tasks
}
