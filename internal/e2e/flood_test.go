package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trellis"
)

// zeros is an endless body that costs its sender no memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// memMB reads a field of /proc/PID/status (VmRSS, VmHWM) in MB.
func memMB(t *testing.T, pid int, field string) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read the manager's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("/proc/%d/status: %s:%s", pid, field, v)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// A flood of large bodies from peers without the secret, over HTTP/1.1
// and HTTP/2, to the RPCs and the file store, leaves the manager's memory
// where it was, while a client with the secret connects and gets its
// status within a second throughout; connections that never send a
// request do not pile up.
func TestStrangersFlood(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	if _, err := c.client().Status(ctx); err != nil {
		t.Fatal(err)
	}
	pid := c.manager.cmd.Process.Pid
	idle := memMB(t, pid, "VmRSS")

	// Silent connections, more than the manager keeps for strangers:
	// the first goes at once, not when its header timeout (10 s) ends.
	var silent []net.Conn
	for range 300 {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		silent = append(silent, conn)
	}
	silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent[0].Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("the first of 300 silent connections: read %d bytes, %v; want it closed by the manager", n, err)
	}

	flood, stop := context.WithTimeout(ctx, 4*time.Second)
	defer stop()
	h1 := new(http.Protocols)
	h1.SetHTTP1(true)
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	transports := []*http.Transport{{Protocols: h1}, {Protocols: h2c}}
	targets := []struct{ method, path, contentType string }{
		{"POST", "/trellis.v1.Manager/Submit", "application/proto"},
		{"POST", "/trellis.v1.Manager/Work", "application/connect+proto"},
		{"PUT", "/files/sha256-" + strings.Repeat("0", 64), "application/octet-stream"},
	}
	var refused, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		target, tr := targets[i%3], transports[i/3%2]
		wg.Add(1)
		go func() { // exits when the flood ends
			defer wg.Done()
			client := &http.Client{Transport: tr}
			for flood.Err() == nil {
				req, _ := http.NewRequestWithContext(flood, target.method, "http://"+c.addr+target.path, io.LimitReader(zeros{}, 15<<20))
				req.ContentLength = 15 << 20
				req.Header.Set("Content-Type", target.contentType)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if strings.Contains(string(b), "wrong or missing secret") {
					refused.Add(1)
				}
			}
		}()
	}

	// A new client with the secret, with its own connection, each time.
	probes := 0
	for flood.Err() == nil {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := trellis.Dial(pctx, c.addr, trellis.WithSecret(c.secret()))
		if err == nil {
			_, err = cl.Status(pctx)
			cl.Close()
		}
		cancel()
		if d := time.Since(start); err != nil || d > time.Second {
			t.Errorf("during the flood, Dial and Status took %s: %v; want an answer within 1s", d.Round(time.Millisecond), err)
		}
		probes++
	}
	wg.Wait()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}

	peak, after := memMB(t, pid, "VmHWM"), memMB(t, pid, "VmRSS")
	t.Logf("manager RSS: %.1f MB idle, %.1f MB peak, %.1f MB after; %d refusals read, %d requests broken, %d status probes",
		idle, peak, after, refused.Load(), failed.Load(), probes)
	if peak > idle+50 {
		t.Errorf("manager's peak RSS %.1f MB, idle %.1f MB: the flood cost %.1f MB, want at most 50", peak, idle, peak-idle)
	}
	if refused.Load() == 0 {
		t.Errorf("no flood request read a refusal naming the secret")
	}
	if _, err := c.client().Status(ctx); err != nil {
		t.Errorf("status after the flood: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
