//go:build !linux

package library

import (
	"context"
	"os"
)

// serveStdio serves on stdin and stdout. Only Linux redirects stray prints.
func (l *Library) serveStdio() error {
	return l.ServeIO(context.Background(), os.Stdin, os.Stdout)
}
