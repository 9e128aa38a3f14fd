package journal_test

import (
	"fmt"
	"testing"
	"time"

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

// BenchmarkCompact compacts a journal of 100,000 records of 100 bytes
// (folded to one in ten) while a writer appends records and waits for
// each to be durable, as the manager's loop waits for a submit: it
// reports the compaction's time and the longest such wait during it,
// which is what compaction costs the loop.
func BenchmarkCompact(b *testing.B) {
	const n = 100000
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = make([]byte, 100)
	}
	tenth := func(recs [][]byte) ([][]byte, error) { return recs[:len(recs)/10], nil }
	var compactS, maxWaitS float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		journaltest.Write(b, dir, recs)
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		stop := runCommitter(j)
		done := make(chan struct{})
		waits := make(chan time.Duration, 1)
		go func() { // exits when done is closed
			var longest time.Duration
			for {
				select {
				case <-done:
					waits <- longest
					return
				default:
				}
				start := time.Now()
				seq := j.Append(recs[0])
				for j.Durable() < seq {
					<-j.Synced()
				}
				longest = max(longest, time.Since(start))
			}
		}()
		b.StartTimer()
		start := time.Now()
		if _, err := j.Compact(tenth); err != nil {
			b.Fatal(err)
		}
		compactS += time.Since(start).Seconds()
		b.StopTimer()
		close(done)
		maxWaitS = max(maxWaitS, (<-waits).Seconds())
		stop()
		j.Close()
	}
	b.ReportMetric(1000*compactS/float64(b.N), "compact-ms")
	b.ReportMetric(1000*maxWaitS, "max-durable-wait-ms")
}
