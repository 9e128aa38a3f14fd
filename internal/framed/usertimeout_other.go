//go:build !linux

package framed

import (
	"net"
	"time"
)

// userTimeout is Linux's alone: elsewhere keepalives find a dead host.
func userTimeout(net.Conn, time.Duration) {}
