//go:build !kubernetes

package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"trellis/internal/factory"
)

// kubeFlags stands in for --batch kubernetes in a binary built without it:
// client-go would triple the binary (24 to 75 MB), so Kubernetes support
// is built with -tags kubernetes.
type kubeFlags struct{}

func (k *kubeFlags) flags(*pflag.FlagSet) {}

func (k *kubeFlags) batch(time.Duration, time.Duration, string, string, *slog.Logger) (factory.Batch, error) {
	return nil, errors.New("--batch kubernetes: this trellis binary was built without Kubernetes support; build it with: go build -tags kubernetes ./cmd/trellis")
}
