package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchDagAcrossHosts runs scripts/netns-bench as users run it: a
// manager and two workers, each in its own network namespace with its link
// limited to 200 mbit by tc, and `bench dag --manager` on them. It checks
// what the benchmark reports of that cluster, then runs its peer mode (one
// transfer between two hosts at 1 gbit, plain and over TLS), and checks
// that the script leaves no namespace behind. It needs root, ip and tc.
func TestBenchDagAcrossHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: network namespaces and tc need CAP_NET_ADMIN")
	}
	for _, tool := range []string{"ip", "tc", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install iproute2 python3)", tool)
		}
	}
	prefix := fmt.Sprintf("te%d", os.Getpid()%10000)
	// Root in a container may still not make namespaces.
	if out, err := exec.Command("ip", "netns", "add", prefix+"-p").CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", prefix+"-p").CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s-p: %v: %s", prefix, err, out)
	}
	last := netnsBench(t, prefix, "--rate", "200mbit", "dag", "--maps", "8", "--reduces", "2", "--map-mib", "2")
	var r struct {
		Workers         int     `json:"workers"`
		Seconds         float64 `json:"seconds"`
		BytesViaManager int64   `json:"bytes_via_manager"`
		BytesPeer       int64   `json:"bytes_peer"`
		BytesTotal      int64   `json:"bytes_total"`
		Manager         string  `json:"manager"`
		LinkRate        string  `json:"link_rate"`
	}
	if err := json.Unmarshal(last, &r); err != nil {
		t.Fatalf("netns-bench printed %q: %v", last, err)
	}
	if r.Workers != 2 || r.LinkRate != "200mbit" || !strings.HasPrefix(r.Manager, "10.78.0.10:") || r.Seconds <= 0 {
		t.Errorf("bench dag across hosts = %+v, want 2 workers, link_rate 200mbit, the manager in the first namespace and seconds", r)
	}
	if r.BytesViaManager != 0 || r.BytesTotal != r.BytesPeer {
		t.Errorf("bytes_via_manager = %d, bytes_total = %d, bytes_peer = %d: want every byte moved peer to peer", r.BytesViaManager, r.BytesTotal, r.BytesPeer)
	}

	// The peer transfer between two hosts, plain and over TLS (the fetching
	// host verifies the serving host's certificate at its namespace address).
	last = netnsBench(t, prefix, "--rate", "1gbit", "peer", "--mib", "4", "--rounds", "1")
	var p struct {
		LinkRate string    `json:"link_rate"`
		Plain    []float64 `json:"plain_mb_per_s"`
		TLS      []float64 `json:"tls_mb_per_s"`
		Ratio    float64   `json:"peer_tls_vs_plain"`
	}
	if err := json.Unmarshal(last, &p); err != nil {
		t.Fatalf("netns-bench peer printed %q: %v", last, err)
	}
	if p.LinkRate != "1gbit" || len(p.Plain) != 1 || len(p.TLS) != 1 || p.Plain[0] <= 0 || p.TLS[0] <= 0 || p.Ratio <= 0 {
		t.Errorf("bench peer across hosts = %+v, want one plain and one TLS rate at 1gbit and their ratio", p)
	}
}

// netnsBench runs scripts/netns-bench with args on namespaces named by
// prefix, returns the last line it printed, and checks that it removed
// every namespace it made.
func netnsBench(t *testing.T, prefix string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/netns-bench", append([]string{"--prefix", prefix, "--binary", binary}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("netns-bench %v: %v\n%s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range strings.Fields(string(out)) {
		if strings.HasPrefix(ns, prefix) {
			t.Errorf("namespace %s is left after netns-bench %v ended", ns, args)
		}
	}
	return []byte(lines[len(lines)-1])
}
