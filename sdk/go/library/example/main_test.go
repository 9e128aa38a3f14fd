package main

import (
	"bufio"
	"context"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"trellis/sdk/go/library/wire"
)

func TestExample(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { // exits when the input is closed below
		err := newLibrary().ServeIO(context.Background(), inR, outW)
		outW.Close()
		done <- err
	}()
	r := bufio.NewReader(outR)
	hs, err := wire.ReadHandshake(r)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"add", "mul", "upper"}, hs.Functions); diff != "" {
		t.Errorf("functions mismatch (-want +got):\n%s", diff)
	}
	w := bufio.NewWriter(inW)
	calls := []struct{ fn, args, want string }{
		{"add", "[1,2]", "3"},
		{"mul", "[1.5,4]", "6"},
		{"upper", `"abc"`, `"ABC"`},
	}
	for i, c := range calls {
		wire.WriteFrame(w, &wire.Header{Type: wire.TypeCall, ID: uint64(i + 1), Fn: c.fn}, []byte(c.args))
		w.Flush()
		f, err := wire.ReadFrame(r)
		if err != nil || !f.Header.OK || string(f.Body) != c.want {
			t.Errorf("%s(%s) = %+v %q, %v; want %s", c.fn, c.args, f.Header, f.Body, err, c.want)
		}
	}
	inW.Close()
	io.Copy(io.Discard, r)
	if err := <-done; err != nil {
		t.Errorf("ServeIO = %v", err)
	}
}
