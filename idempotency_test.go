package trellis_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis"
)

// TestIdempotencyKey checks that every attempt of a task sees the same
// TRELLIS_IDEMPOTENCY_KEY, SESSION/KEY, and that tasks see different ones.
func TestIdempotencyKey(t *testing.T) {
	c := startLocal(t, 1)
	log := filepath.Join(t.TempDir(), "keys.log")
	// The first attempt fails after logging; the retry logs again and succeeds.
	cmd := `printf '%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$LOG"; test "$TRELLIS_ATTEMPT" -ge 2`
	a := trellis.NewTask(cmd)
	a.Key, a.Env, a.Retries, a.RetryOnError = "first", []string{"LOG=" + log}, 1, true
	b := trellis.NewTask(cmd)
	b.Key, b.Env, b.Retries, b.RetryOnError = "second", []string{"LOG=" + log}, 1, true
	b.After = []*trellis.Task{a}
	hs, err := c.Submit(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := wait(t, h); !r.OK() || r.Attempts != 2 {
			t.Fatalf("%s: %v after %d attempts, want success after 2 (stderr %q)", h.Name, r.Err(), r.Attempts, r.Stderr)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("log holds %q, want 4 lines (2 attempts of 2 tasks)", data)
	}
	session, _, _ := strings.Cut(lines[0], "/")
	want := []string{session + "/first", session + "/first", session + "/second", session + "/second"}
	if session == "" || strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("TRELLIS_IDEMPOTENCY_KEY of each attempt: got %q, want %q with a session name", lines, want)
	}
}
