package libhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trellis/sdk/go/library"
)

// TestHelperProcess is not a test: run with GO_WANT_HELPER_PROCESS=1 and the
// arguments "-- lib MODE", it is a library built with the Go SDK. Its
// working directory is the library's sandbox, where it leaves files for the
// tests to read: "setups" (a line per set-up), "maxconc" (the highest number
// of concurrent "conc" calls) and "cancelled" (written when a "wait" call's
// context ends).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) != 3 || args[1] != "lib" {
		fmt.Fprintf(os.Stderr, "usage: -- lib MODE; got %q\n", os.Args)
		os.Exit(2)
	}
	library.Main(helperLibrary(args[2]))
}

func helperLibrary(mode string) *library.Library {
	l := library.New("helper")
	l.Setup(func(ctx context.Context) error {
		f, err := os.OpenFile("setups", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintln(f, os.Getpid())
		if mode == "setupfail" {
			fmt.Fprintln(os.Stderr, "loading the model")
			return errors.New("no model file")
		}
		return nil
	})
	l.Register("echo", func(ctx context.Context, args []byte) ([]byte, error) { return args, nil })
	l.Register("noop", func(ctx context.Context, args []byte) ([]byte, error) { return nil, nil })
	l.Register("fail", func(ctx context.Context, args []byte) ([]byte, error) {
		return nil, fmt.Errorf("bad input %s", args)
	})
	l.Register("panic", func(ctx context.Context, args []byte) ([]byte, error) { panic("boom") })
	l.Register("exit", func(ctx context.Context, args []byte) ([]byte, error) {
		fmt.Fprintln(os.Stderr, "dying now")
		os.Exit(3)
		return nil, nil
	})
	l.Register("wait", func(ctx context.Context, args []byte) ([]byte, error) {
		<-ctx.Done()
		os.WriteFile("cancelled", []byte(ctx.Err().Error()), 0o644)
		return nil, ctx.Err()
	})
	l.Register("ignore", func(ctx context.Context, args []byte) ([]byte, error) {
		time.Sleep(time.Hour) // ignores cancellation
		return nil, nil
	})
	var running, peak atomic.Int32
	l.Register("conc", func(ctx context.Context, args []byte) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		p := strconv.Itoa(int(peak.Load()))
		os.WriteFile("maxconc.tmp"+strconv.Itoa(int(n)), []byte(p), 0o644)
		os.Rename("maxconc.tmp"+strconv.Itoa(int(n)), "maxconc")
		return []byte(p), nil
	})
	l.Register("alloc", func(ctx context.Context, args []byte) ([]byte, error) {
		mb, _ := strconv.Atoi(string(args))
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		<-ctx.Done()
		return b[:1], nil
	})
	l.Register("startenv", func(ctx context.Context, args []byte) ([]byte, error) {
		// The variable named by args as the process was started with it
		// (the SDK may have changed its environment since).
		environ, err := os.ReadFile("/proc/self/environ")
		if err != nil {
			return nil, err
		}
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, string(args)+"="); ok {
				return []byte(v), nil
			}
		}
		return []byte("(unset)"), nil
	})
	l.Register("lookupenv", func(ctx context.Context, args []byte) ([]byte, error) {
		v, ok := os.LookupEnv(string(args))
		if !ok {
			v = "(unset)"
		}
		return []byte(v), nil
	})
	l.Register("env", func(ctx context.Context, args []byte) ([]byte, error) {
		var out []string
		for _, k := range strings.Fields(string(args)) {
			out = append(out, k+"="+os.Getenv(k))
		}
		wd, _ := os.Getwd()
		out = append(out, "PWD="+wd)
		return []byte(strings.Join(out, "\n")), nil
	})
	l.Register("deadline", func(ctx context.Context, args []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return []byte("none"), nil
		}
		return []byte(strconv.FormatInt(time.Until(d).Milliseconds(), 10)), nil
	})
	l.Register("log", func(ctx context.Context, args []byte) ([]byte, error) {
		library.Log(ctx, "hello from "+string(args))
		return nil, nil
	})
	l.Register("print", func(ctx context.Context, args []byte) ([]byte, error) {
		fmt.Println("a stray print") // the SDK sends it to stderr
		return []byte("printed"), nil
	})
	return l
}
