//go:build !linux

package worker

import (
	"net"
	"time"
)

// tcpUserTimeout is Linux's alone: elsewhere keepalives find a dead host.
func tcpUserTimeout(net.Conn, time.Duration) {}
