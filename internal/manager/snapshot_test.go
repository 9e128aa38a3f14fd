package manager

import (
	"fmt"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

// BenchmarkPublish times building and publishing a snapshot of a manager
// holding n queued tasks, the cost a reader's first Status after a burst
// pays (once per burst, not per event).
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{2000, 100_000} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s", StoreDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer m.ln.Close()
			req := &pb.SubmitRequest{Session: "bench"}
			for i := range n {
				req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: fmt.Sprint(i), Command: "true",
					Resources: &pb.Resources{Cores: float64(1 + i%4), MemoryMb: 100}})
			}
			s := m.state
			if r := s.submit(req, nil); r.err != nil {
				b.Fatal(r.err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.stepped()
				s.publish()
			}
		})
	}
}
