package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"trellis/examples/ml/digits"
)

// summary is the pipeline's last line of output, as JSON.
type summary struct {
	Accuracy float64 `json:"accuracy"` // on the test set, from the evaluate calls
	Tasks    int     `json:"tasks"`    // command tasks: prep, train, pick
	Calls    int     `json:"calls"`    // function calls: evaluate, predict
	Seconds  float64 `json:"seconds"`  // the whole run, cluster start included

	Correct            int                `json:"correct"`
	TestRows           int                `json:"test_rows"`
	Workers            int                `json:"workers"`
	Instances          int                `json:"instances"` // library processes that answered calls
	Setups             int64              `json:"setups"`    // loads of the test set and model, all instances together
	TaskSeconds        map[string]float64 `json:"task_seconds"`
	CallSeconds        map[string]float64 `json:"call_seconds"`
	Best               digits.TrainConfig `json:"best"`
	ValidationAccuracy float64            `json:"validation_accuracy"`
	BytesFromPeers     int64              `json:"bytes_from_peers"`   // moved worker to worker
	BytesFromManager   int64              `json:"bytes_from_manager"` // sent to workers by the manager
}

func (pl *pipeline) summarize(ctx context.Context) (*summary, error) {
	st, err := pl.c.Status(ctx)
	if err != nil {
		return nil, err
	}
	sum := &summary{
		Accuracy: round(float64(pl.correct)/float64(pl.evaluated), 4), Correct: pl.correct, TestRows: pl.evaluated,
		Workers: pl.cfg.workers, Instances: len(pl.instances),
		TaskSeconds: make(map[string]float64), CallSeconds: make(map[string]float64),
		Best: pl.best, ValidationAccuracy: round(pl.validation, 4),
		BytesFromPeers: st.BytesFromPeers, BytesFromManager: st.BytesFromManager,
	}
	for _, in := range pl.instances {
		sum.Setups += in.setups
	}
	for _, s := range pl.clock.stages {
		if s.calls {
			sum.Calls += s.count
			sum.CallSeconds[s.name] = round(s.seconds, 3)
		} else {
			sum.Tasks += s.count
			sum.TaskSeconds[s.name] = round(s.seconds, 3)
		}
	}
	sum.Seconds = round(time.Since(pl.p.start).Seconds(), 3)
	return sum, nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// printReport writes the human part of the report, then the JSON line.
func printReport(w io.Writer, sum *summary, stages []*stage, instances map[string]*instance) {
	fmt.Fprintf(w, "\ntest accuracy: %.4f (%d/%d), best model lr=%g l2=%g (validation accuracy %.4f)\n",
		sum.Accuracy, sum.Correct, sum.TestRows, sum.Best.LearningRate, sum.Best.L2, sum.ValidationAccuracy)
	fmt.Fprintln(w, "where each step ran:")
	for _, s := range stages {
		kind := "task"
		if s.calls {
			kind = "call"
		}
		fmt.Fprintf(w, "  %-9s %-9s on %s\n", s.name, plural(s.count, kind), s.where())
	}
	fmt.Fprintf(w, "library %q: %s (on %s), %s for %s\n", libraryName, plural(sum.Instances, "instance"),
		instanceWorkers(instances), plural(int(sum.Setups), "set-up"), plural(sum.Calls, "call"))
	fmt.Fprintln(w, "time by modality (each step from the end of the one before):")
	fmt.Fprintf(w, "  tasks  %s\n", stageTimes(stages, false))
	fmt.Fprintf(w, "  calls  %s (evaluate includes the library's start)\n", stageTimes(stages, true))
	fmt.Fprintf(w, "data: %s moved worker to worker, %s from the manager\n",
		kilobytes(sum.BytesFromPeers), kilobytes(sum.BytesFromManager))
	fmt.Fprintf(w, "total: %d tasks, %d calls in %.2fs\n", sum.Tasks, sum.Calls, sum.Seconds)
	line, _ := json.Marshal(sum) // plain data: cannot fail
	fmt.Fprintf(w, "%s\n", line)
}

// stageTimes lists the times of the task stages, or of the call stages,
// and their total.
func stageTimes(stages []*stage, calls bool) string {
	var parts []string
	total := 0.0
	for _, s := range stages {
		if s.calls == calls {
			parts = append(parts, fmt.Sprintf("%s %.2fs", s.name, s.seconds))
			total += s.seconds
		}
	}
	return fmt.Sprintf("%s, total %.2fs", strings.Join(parts, ", "), total)
}

func instanceWorkers(instances map[string]*instance) string {
	var ws []string
	for _, id := range slices.Sorted(maps.Keys(instances)) {
		ws = append(ws, instances[id].worker)
	}
	slices.Sort(ws)
	return strings.Join(ws, ", ")
}

func kilobytes(n int64) string { return fmt.Sprintf("%.1f KB", float64(n)/1000) }

// plural writes n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
