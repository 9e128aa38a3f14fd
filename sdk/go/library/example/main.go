// Command example is a tiny trellis library: it serves "add" and "mul" on
// pairs of numbers, and "upper" on a string. Run it as a library's command,
// e.g. `go build -o mathlib ./sdk/go/library/example` and command
// "./mathlib"; the worker speaks to it on stdin and stdout.
package main

import (
	"context"
	"strings"

	"trellis/sdk/go/library"
)

func main() {
	library.Main(newLibrary())
}

func newLibrary() *library.Library {
	l := library.New("math")
	l.Register("add", library.JSON(func(ctx context.Context, a [2]float64) (float64, error) {
		return a[0] + a[1], nil
	}))
	l.Register("mul", library.JSON(func(ctx context.Context, a [2]float64) (float64, error) {
		return a[0] * a[1], nil
	}))
	l.Register("upper", library.JSON(func(ctx context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	}))
	return l
}
