//go:build !linux

package sandbox

import (
	"log/slog"
	"syscall"
	"time"
)

// Off Linux there are no cgroups and no parent-death signal: processes are
// contained by their process group and the guard.

type cgroups struct{}

type cell struct{}

type oomNotes struct{ fd int }

func (o *oomNotes) count() int64 { return 0 }

func openCgroups() (*cgroups, string) { return nil, "not enforced (cgroups are Linux only)" }

func (g *cgroups) cell(float64, int64) (*cell, bool, error) { return nil, false, nil }
func (g *cgroups) release(*cell, bool) (bool, bool)         { return true, false }
func (g *cgroups) close() error                             { return nil }
func (g *cgroups) dirs() (string, []string)                 { return "", nil }
func (g *cgroups) memV1() bool                              { return false }
func (g *cgroups) gatesQuota() bool                         { return false }
func (g *cgroups) memoryEnforcement() string                { return "sampled" }

func onTmpfs(string) bool { return false }

func (c *cell) start(fork func() error, _, _ bool) error { return fork() }
func (c *cell) join(bool) string                         { return "" }
func (c *cell) needsV1() bool                            { return false }
func (c *cell) deferQuota() bool                         { return false }
func (c *cell) oomKilled() func() bool                   { return nil }
func (c *cell) oomEvents() (*oomNotes, int64)            { return nil, 0 }
func (c *cell) kill()                                    {}
func (c *cell) procsFile() string                        { return "" }
func (c *cell) procsFD() int                             { return -1 }

func procAttr(*cell, bool) *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func removeCgroup(string, bool, int, time.Duration) error { return nil }

type quotaGate struct{}

func startQuotaGate(*cell, float64, *slog.Logger) *quotaGate { return nil }
func (g *quotaGate) stop()                                   {}
