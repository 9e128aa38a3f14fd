package journal_test

import (
	"fmt"
	"syscall"
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

// BenchmarkPaced appends records at a steady rate from one goroutine, as
// the manager's loop does while tasks or calls run (5,000 records/s: about
// 1,700 command tasks/s, three records each; 30,000: 15,000 calls/s, two
// each; appended in bursts, as the sleeps between them fall), with
// commits paced at most once per interval (-1: unpaced). It
// reports fdatasyncs per 1,000 records, this process's CPU per record
// (user and system), and how long a record waited to be durable on average.
func BenchmarkPaced(b *testing.B) {
	for _, rate := range []int{5000, 30000} {
		for _, interval := range []time.Duration{-1, time.Millisecond, 3 * time.Millisecond} {
			b.Run(fmt.Sprintf("rate-%d/interval-%v", rate, interval), func(b *testing.B) {
				count := journaltest.NewFaulty(nil)
				j, err := journal.Open(b.TempDir(), journal.Options{Wrap: count.Wrap, CommitInterval: interval})
				if err != nil {
					b.Fatal(err)
				}
				stop := runCommitter(j)
				rec := make([]byte, 100)
				gap := time.Second / time.Duration(rate)
				var waited time.Duration
				type pending struct {
					seq journal.Seq
					at  time.Time
				}
				var queue []pending
				b.ResetTimer()
				cpu := processCPU()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if due := start.Add(time.Duration(i) * gap); time.Until(due) > 0 {
						time.Sleep(time.Until(due)) // the records due meanwhile go in a burst
					}
					queue = append(queue, pending{j.Append(rec), time.Now()})
					d := j.Durable()
					for len(queue) > 0 && queue[0].seq <= d {
						waited += time.Since(queue[0].at)
						queue = queue[1:]
					}
				}
				for len(queue) > 0 {
					<-j.Synced()
					d := j.Durable()
					for len(queue) > 0 && queue[0].seq <= d {
						waited += time.Since(queue[0].at)
						queue = queue[1:]
					}
				}
				b.StopTimer()
				used := processCPU() - cpu
				commits, _ := count.Counts()
				b.ReportMetric(1000*float64(commits)/float64(b.N), "fsyncs/1000rec")
				b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/rec")
				b.ReportMetric(float64(waited.Microseconds())/float64(b.N), "wait-µs/rec")
				stop()
				j.Close()
			})
		}
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
