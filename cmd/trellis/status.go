package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"trellis"
)

func statusCmd() *cobra.Command {
	var secretFile string
	var asJSON, watch bool
	var ctls clientTLS
	cmd := &cobra.Command{
		Use:   "status HOST:PORT",
		Short: "Show a cluster's workers, task counts, library instances and demand",
		Long: `Show a cluster's workers, task counts, library instances and demand.

Library instances are shown as instances, never counted as running tasks.
--json prints the whole snapshot; docs/status.md lists its fields.
--watch redraws it every second until interrupted; with --json it prints
the snapshot as one line each time it changes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := readSecret(secretFile)
			if err != nil {
				return err
			}
			tlsConfig, err := ctls.config(args[0])
			if err != nil {
				return err
			}
			dial := []trellis.Option{trellis.WithSecret(secret), trellis.WithTLS(tlsConfig)}
			if watch {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return watchStatus(ctx, cmd.OutOrStdout(), args[0], dial, asJSON)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := trellis.Dial(ctx, args[0], dial...)
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			printStatus(out, args[0], s)
			return nil
		},
	}
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the shared secret (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshot as JSON (fields: docs/status.md)")
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw every second until interrupted (with --json: one line per change)")
	ctls.flags(cmd.Flags())
	return cmd
}

// watchStatus reads the manager's snapshot every second until ctx ends.
// For people it clears the terminal and redraws it each time; as JSON it
// writes a line when the snapshot changed, its time aside. Each read has
// its own deadline, named when it passes.
func watchStatus(ctx context.Context, out io.Writer, addr string, dial []trellis.Option, asJSON bool) error {
	const every, deadline = time.Second, 10 * time.Second
	dctx, cancel := context.WithTimeout(ctx, deadline)
	c, err := trellis.Dial(dctx, addr, dial...)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	var last []byte
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, deadline)
		s, err := c.Status(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: the watch is over
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("status of %s: no answer within %s", addr, deadline)
		case err != nil:
			return err
		case asJSON:
			at := s.SnapshotTime
			s.SnapshotTime = time.Time{}
			key, err := json.Marshal(s)
			if err != nil {
				return err
			}
			if !bytes.Equal(key, last) {
				last = key
				s.SnapshotTime = at
				line, _ := json.Marshal(s)
				fmt.Fprintf(out, "%s\n", line)
			}
		default:
			fmt.Fprint(out, "\x1b[H\x1b[2J") // home and clear, as watch(1) does
			printStatus(out, addr, s)
			fmt.Fprintf(out, "\n(every %s; interrupt to stop)\n", every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// printStatus writes s for people.
func printStatus(out io.Writer, addr string, s *trellis.Status) {
	fmt.Fprintf(out, "manager %s (trellis %s)\n", addr, s.Version)
	fmt.Fprintf(out, "tasks: %d waiting for inputs, %d ready, %d staging inputs, %d running, %d finished (%d succeeded, %d failed)\n",
		s.Waiting, s.Ready, s.Staging, s.Running, s.Finished, s.Succeeded, s.Failed)
	if d := s.Dataflow; d.Finished+d.Waiting+d.Ready+d.Staging+d.Running > 0 {
		fmt.Fprintf(out, "  of which dataflow tasks (reading files tasks produce, or writing temp files): %d waiting for inputs, %d ready, %d staging inputs, %d running, %d finished (%d succeeded, %d failed)\n",
			d.Waiting, d.Ready, d.Staging, d.Running, d.Finished, d.Succeeded, d.Failed)
	}
	if c := s.Calls; c.Finished+c.Waiting+c.Ready+c.Staging+c.Running > 0 {
		fmt.Fprintf(out, "  of which calls: %d waiting for a slot, %d running, %d finished (%d succeeded, %d failed)\n",
			c.Waiting+c.Ready+c.Staging, c.Running, c.Finished, c.Succeeded, c.Failed)
	}
	if i := s.Instances; i.Waiting+i.Ready+i.Staging+i.Running+i.Finished > 0 {
		fmt.Fprintf(out, "library instances: %d running, %d starting or waiting for a place, %d ended\n",
			i.Running, i.Waiting+i.Ready+i.Staging, i.Finished)
	}
	fmt.Fprintf(out, "data: %s from peers, %s from the manager, %s from URLs, %s uploaded to the manager; %d transfers in flight",
		mib(s.BytesFromPeers), mib(s.BytesFromManager), mib(s.BytesFromURLs), mib(s.BytesToManager), s.TransfersInFlight)
	if s.BytesPrefetched > 0 {
		fmt.Fprintf(out, "; %s of those from peers fetched while their consumer's last producers ran", mib(s.BytesPrefetched))
	}
	if s.TasksRecreated > 0 || s.FilesLost > 0 {
		fmt.Fprintf(out, "; %d tasks re-run to recreate lost files, %d files lost", s.TasksRecreated, s.FilesLost)
	}
	if s.Checkpoints > 0 {
		fmt.Fprintf(out, "; %d files checkpointed", s.Checkpoints)
	}
	if s.BytesPruned > 0 || s.TasksHandedBack > 0 {
		fmt.Fprintf(out, "; %s pruned; %d attempts handed back for a full cache", mib(s.BytesPruned), s.TasksHandedBack)
	}
	if s.EvictedForSpace > 0 {
		fmt.Fprintf(out, "; %d files removed from full caches to make room (re-created when needed)", s.EvictedForSpace)
	}
	fmt.Fprint(out, "\n\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWORKER\tADDRESS\tCORES\tMEMORY MB\tDISK MB\tGPUS\tCACHE\tXFER IN/OUT\tDONE\tRUNNING\tINSTANCES")
	simulated := 0
	for _, w := range s.Workers {
		name := w.Name
		if w.Draining {
			name += " (draining)"
		}
		if w.Factory != "" {
			name += " (factory " + w.Factory + ")"
		}
		if w.Simulated {
			name += " (simulated)"
			simulated++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s in %d files (%s needed, %s evictable, %s pruned)\t%d/%d\t%d\t%s\t%s\n", w.ID, name, w.Address,
			used(w.Total.Cores-w.Free.Cores, w.Total.Cores), usedInt(w.Total.MemoryMB-w.Free.MemoryMB, w.Total.MemoryMB),
			usedInt(w.Total.DiskMB-w.Free.DiskMB, w.Total.DiskMB), usedInt(int64(w.Total.GPUs-w.Free.GPUs), int64(w.Total.GPUs)),
			mib(w.CacheBytes), w.CacheFiles, mib(w.CacheNeeded), mib(w.CacheEvictable), mib(w.BytesPruned), w.TransfersIn, w.TransfersOut, w.TasksDone, runningList(w), taskList(w.Instances))
	}
	tw.Flush()
	if len(s.Workers) == 0 {
		fmt.Fprintln(out, "(no workers connected)")
	}
	if simulated > 0 {
		fmt.Fprintf(out, "%d of %d workers are simulated (trellis worker --simulate): they run nothing and complete each task at once, for measuring the manager\n",
			simulated, len(s.Workers))
	}
	printLibraries(out, s.Libraries)
	printDemand(out, s.Demand)
	printFactories(out, s)
	printUnplaceable(out, s)
	if s.Adrift > 0 {
		fmt.Fprintf(out, "\n%s wait for the worker that ran them before the manager restarted (to adopt them; at most 30 s)\n", count(s.Adrift, "task", "tasks"))
	}
	printUnknown(out, s.UnknownTasks)
	if j := s.Journal; j != nil {
		fmt.Fprintf(out, "journal: %s, %d records written, epoch %d, %s on disk\n", j.Path, j.Durable, s.Epoch, mib(int64(j.FileBytes)))
		if l := j.LastSnapshot; l != nil {
			fmt.Fprintf(out, "last snapshot: %s, records 1..%d folded into %d (%s); %d records since\n",
				l.At.Local().Format("2006-01-02 15:04:05"), l.Folded, l.Records, mib(int64(l.Bytes)), j.SinceSnapshot)
		} else {
			fmt.Fprintf(out, "last snapshot: none yet (%d records to replay)\n", j.SinceSnapshot)
		}
		if j.SnapshotError != "" {
			fmt.Fprintf(out, "compaction failing (the journal keeps every record meanwhile): %s\n", j.SnapshotError)
		}
		if j.Error != "" {
			fmt.Fprintf(out, "journal failing (effects wait for it): %s\n", j.Error)
		}
	}
}

// printUnknown lists the at-most-once tasks that wait for reconcile.
func printUnknown(out io.Writer, us []trellis.UnknownTask) {
	if len(us) == 0 {
		return
	}
	fmt.Fprintf(out, "\n%s in unknown: an attempt was lost and may have taken effect; each waits for trellis reconcile ADDR TASK --done, --failed or --rerun:\n", count(len(us), "task", "tasks"))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tNAME\tATTEMPT\tWHY")
	for _, u := range us {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", u.Task, u.Name, u.Attempt, u.Why)
	}
	tw.Flush()
}

// printUnplaceable lists the tasks that no connected worker could run.
func printUnplaceable(out io.Writer, s *trellis.Status) {
	if s.Unplaceable == 0 {
		return
	}
	what := "tasks wait"
	if s.Unplaceable == 1 {
		what = "task waits"
	}
	fmt.Fprintf(out, "\n%d %s that no connected worker could run", s.Unplaceable, what)
	if len(s.UnplaceableTasks) < s.Unplaceable {
		fmt.Fprintf(out, " (%d shown)", len(s.UnplaceableTasks))
	}
	fmt.Fprintln(out, ":")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tNAME\tFOR\tWHY")
	for _, u := range s.UnplaceableTasks {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", u.Task, u.Name, s.SnapshotTime.Sub(u.Since).Round(time.Second), u.Why)
	}
	tw.Flush()
}

// printFactories lists the worker factories that report to the manager,
// with the jobs they have pending in their batch systems.
func printFactories(out io.Writer, s *trellis.Status) {
	for _, f := range s.Factories {
		fmt.Fprintf(out, "\nfactory %s (%s, %d..%d workers): %s connected; %s started, %d pending",
			f.Name, f.Batch, f.Min, f.Max, count(f.WorkersConnected, "worker", "workers"), count(f.StartedCount, "job", "jobs"), f.PendingCount)
		if !f.OldestPending.IsZero() {
			fmt.Fprintf(out, " (the oldest for %s)", max(0, time.Since(f.OldestPending)).Round(time.Second))
		}
		if f.Stale {
			fmt.Fprintf(out, "; not heard from for %s", max(0, time.Since(f.Reported)).Round(time.Second))
		}
		fmt.Fprintln(out)
		if len(f.Pending) > 0 {
			fmt.Fprintf(out, "  pending: %s", strings.Join(f.Pending[:min(len(f.Pending), 10)], ", "))
			if f.PendingCount > 10 {
				fmt.Fprintf(out, " and %d more", f.PendingCount-10)
			}
			fmt.Fprintln(out)
		}
		if f.Decision != "" {
			fmt.Fprintf(out, "  last decision: %s\n", f.Decision)
		}
	}
}

// printDemand lists what waits and runs by resource shape.
func printDemand(out io.Writer, demand []trellis.ShapeDemand) {
	if len(demand) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHAPE (cores/memory MB/disk MB/gpus)\tTASKS WAITING\tTASKS RUNNING\tINSTANCES\tINSTANCES WANTED")
	for _, d := range demand {
		fmt.Fprintf(tw, "%g/%d/%d/%d\t%d\t%d\t%d\t%d\n", d.Shape.Cores, d.Shape.MemoryMB, d.Shape.DiskMB, d.Shape.GPUs,
			d.Waiting, d.Running, d.Instances, d.InstancesWanted)
	}
	tw.Flush()
}

func used(u, total float64) string  { return fmt.Sprintf("%g/%g", u, total) }
func usedInt(u, total int64) string { return fmt.Sprintf("%d/%d", u, total) }

// runningList lists what a worker runs, and then what it holds ahead of
// its cores (manager --ahead), which waits there.
func runningList(w trellis.WorkerStatus) string {
	if len(w.Ahead) == 0 {
		return taskList(w.Running)
	}
	return taskList(w.Running) + " (held ahead: " + taskList(w.Ahead) + ")"
}

func taskList(ids []uint64) string {
	if len(ids) == 0 {
		return "-"
	}
	parts := make([]string, 0, min(len(ids), 8))
	for i, id := range ids {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("+%d more", len(ids)-8))
			break
		}
		parts = append(parts, fmt.Sprint(id))
	}
	return strings.Join(parts, ",")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// printLibraries lists the installed libraries and where their instances run.
func printLibraries(out io.Writer, libs []trellis.LibraryStatus) {
	if len(libs) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIBRARY\tCALLS DONE\tWAITING\tSTARTED\tINSTANCES (#id worker: busy/slots)")
	for _, l := range libs {
		var insts []string
		for _, i := range l.Instances {
			switch {
			case i.Worker == "":
				insts = append(insts, fmt.Sprintf("#%d waiting for a place", i.ID))
			case !i.Ready:
				insts = append(insts, fmt.Sprintf("#%d %s: starting", i.ID, i.Worker))
			default:
				insts = append(insts, fmt.Sprintf("#%d %s: %d/%d", i.ID, i.Worker, i.Busy, i.Slots))
			}
		}
		desc := strings.Join(insts, ", ")
		if l.Broken != "" {
			desc = "BROKEN: " + l.Broken
		} else if desc == "" {
			desc = "none (started when calls need one)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", l.Name, l.CallsDone, l.CallsWaiting, l.InstancesStarted, desc)
	}
	tw.Flush()
}
