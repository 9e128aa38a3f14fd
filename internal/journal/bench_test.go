package journal_test

import (
	"fmt"
	"testing"

	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
)

// BenchmarkGroupCommit appends 200-byte records from one goroutine, as the
// manager's loop does, waiting for durability after every `wait` records
// (1: a loop that waits for each record; 0: never until the end). It
// reports records/s and the fsyncs (commits) per 1,000 records.
func BenchmarkGroupCommit(b *testing.B) {
	for _, wait := range []int{1, 64, 0} {
		b.Run(fmt.Sprint("wait-every-", wait), func(b *testing.B) {
			count := journaltest.NewFaulty(nil)
			j, err := journal.Open(b.TempDir(), journal.Options{Wrap: count.Wrap})
			if err != nil {
				b.Fatal(err)
			}
			stop := runCommitter(j)
			rec := make([]byte, 200)
			b.ResetTimer()
			var last journal.Seq
			for i := 0; i < b.N; i++ {
				last = j.Append(rec)
				if wait > 0 && (i+1)%wait == 0 {
					for j.Durable() < last {
						<-j.Synced()
					}
				}
			}
			for j.Durable() < last {
				<-j.Synced()
			}
			b.StopTimer()
			commits, _ := count.Counts()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(1000*float64(commits)/float64(b.N), "fsyncs/1000rec")
			stop()
			j.Close()
		})
	}
}
