package library

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"trellis/sdk/go/library/wire"
)

// Func is a library function: arguments in, result out (JSON by
// convention). ctx is cancelled when the call is cancelled or times out.
type Func func(ctx context.Context, args []byte) ([]byte, error)

// Library is a named set of functions and an optional set-up step. Build it
// with New, Register and Setup, then call Serve (or Main) once.
type Library struct {
	name  string
	funcs map[string]Func
	order []string // registration order, for the handshake
	setup func(ctx context.Context) error
}

// New returns an empty library called name. It panics if name cannot appear
// in a handshake line (empty, or holding '|' or a control character).
func New(name string) *Library {
	if !wire.ValidLibraryName(name) {
		panic(fmt.Sprintf("library: invalid library name %q", name))
	}
	return &Library{name: name, funcs: make(map[string]Func)}
}

// Register adds the function fn under name. It panics if name is not made of
// [A-Za-z0-9_.-], is already registered, or fn is nil.
func (l *Library) Register(name string, fn Func) {
	if !wire.ValidFunctionName(name) {
		panic(fmt.Sprintf("library: invalid function name %q (want [A-Za-z0-9_.-]+)", name))
	}
	if fn == nil {
		panic(fmt.Sprintf("library: nil function %q", name))
	}
	if _, dup := l.funcs[name]; dup {
		panic(fmt.Sprintf("library: function %q registered twice", name))
	}
	l.funcs[name] = fn
	l.order = append(l.order, name)
}

// Setup sets the set-up step, run once by Serve before the handshake (to
// load a model, say). A later call replaces an earlier one.
func (l *Library) Setup(fn func(ctx context.Context) error) {
	l.setup = fn
}

// Functions returns the registered function names in registration order.
func (l *Library) Functions() []string {
	return append([]string(nil), l.order...)
}

// Serve speaks the protocol on os.Stdin and os.Stdout until stdin ends, and
// returns nil then. Any error (a failed set-up, a malformed frame from the
// worker, a failed write) is also written to stderr before it is returned.
func (l *Library) Serve() error {
	err := l.serveStdio()
	if err != nil {
		fmt.Fprintf(os.Stderr, "trellis library %s: %v\n", l.name, err)
	}
	return err
}

// Main calls l.Serve and exits: with status 0 when the worker closed stdin,
// 1 on any error.
func Main(l *Library) {
	if err := l.Serve(); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// JSON adapts a typed function to a Func: the arguments are decoded from JSON
// into an A (empty arguments leave A's zero value), and the result is encoded
// as JSON.
func JSON[A, R any](fn func(ctx context.Context, args A) (R, error)) Func {
	return func(ctx context.Context, b []byte) ([]byte, error) {
		var a A
		if len(b) > 0 {
			if err := json.Unmarshal(b, &a); err != nil {
				return nil, fmt.Errorf("decode arguments: %w", err)
			}
		}
		r, err := fn(ctx, a)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	}
}

// maxSlots bounds TRELLIS_LIBRARY_SLOTS.
const maxSlots = 1 << 16

// slotsFromEnv returns TRELLIS_LIBRARY_SLOTS, or 1 when it is unset or not a
// positive number.
func slotsFromEnv() int {
	n, err := strconv.Atoi(os.Getenv(wire.EnvSlots))
	if err != nil || n < 1 {
		return 1
	}
	return min(n, maxSlots)
}

// checkProtocol refuses a worker that announces another protocol version.
// An unset variable (the library run by hand) is accepted.
func checkProtocol() error {
	v := os.Getenv(wire.EnvProtocol)
	if v == "" || v == strconv.Itoa(wire.Version) {
		return nil
	}
	return fmt.Errorf("worker speaks protocol %q; this SDK speaks %d", v, wire.Version)
}
