package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"trellis"
	"trellis/examples/ml/data"
	"trellis/examples/ml/digits"
	"trellis/local"
)

// errLowAccuracy is returned, after the report, when the test accuracy is
// under the configured minimum.
var errLowAccuracy = errors.New("test accuracy under the minimum")

// pipeline is one run: the cluster, the graph and what the results said.
type pipeline struct {
	cfg   config
	self  string // this binary: every task's and the library's program
	c     *trellis.Client
	p     progress
	clock stageClock
	g     *graph

	testRows   int
	best       digits.TrainConfig
	validation float64 // the best model's accuracy on the validation shard
	correct    int     // test rows evaluate found right
	evaluated  int     // test rows evaluate saw
	instances  map[string]*instance
}

// instance is a library process as its answers describe it.
type instance struct {
	worker string
	setups int64 // the most that any of its answers reported
}

// run runs the whole pipeline on an embedded cluster, prints progress and
// the report to stdout (the JSON line last), and returns the summary.
func run(ctx context.Context, cfg config, stdout io.Writer) (*summary, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	input, err := dataFile(cfg.data)
	if err != nil {
		return nil, err
	}
	pl := &pipeline{cfg: cfg, self: self, p: progress{w: stdout, start: time.Now()}, instances: make(map[string]*instance),
		g: newGraph(self, input, digits.Sweep()[:cfg.sweep])}
	pl.p.printf("trellis ML pipeline: digits data, %d sweep points, %d local workers", cfg.sweep, cfg.workers)
	pl.c, err = local.Start(ctx, local.Config{Workers: cfg.workers, Cores: cfg.cores})
	if err != nil {
		return nil, err
	}
	defer pl.c.Close()
	pl.p.printf("cluster up: an embedded manager and %d workers of %g cores", cfg.workers, cfg.cores)
	if err := pl.execute(ctx); err != nil {
		return nil, err
	}
	sum, err := pl.summarize(ctx)
	if err != nil {
		return nil, err
	}
	printReport(stdout, sum, pl.clock.stages, pl.instances)
	if sum.Accuracy < cfg.minAccuracy {
		return sum, fmt.Errorf("%w: %.4f < %.2f", errLowAccuracy, sum.Accuracy, cfg.minAccuracy)
	}
	return sum, nil
}

// dataFile is the digits data: the file at path, or the built-in copy.
func dataFile(path string) (*trellis.File, error) {
	if path == "" {
		return trellis.Buffer(data.DigitsCSVGz), nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return trellis.LocalFile(path), nil
}

// execute submits the tasks and installs the library at once, then waits
// stage by stage, submitting the calls when their arguments are known.
func (pl *pipeline) execute(ctx context.Context) error {
	hs, err := pl.c.Submit(ctx, pl.g.tasks()...)
	if err != nil {
		return err
	}
	pl.clock.mark = time.Now()
	if err := pl.c.Install(ctx, pl.g.library(pl.self, pl.cfg.workers)); err != nil {
		return err
	}
	pl.p.printf("submitted %d tasks; installed library %q, which starts once pick has made its model", len(hs), libraryName)
	prep, train, pick := hs[0], hs[1:len(hs)-1], hs[len(hs)-1]
	if err := pl.awaitPrep(ctx, prep); err != nil {
		return err
	}
	// The evaluate calls go in now: they wait in the manager for a library
	// instance, which waits for the model that pick has yet to make.
	evals, err := pl.c.Submit(ctx, callTasks("evaluate", ranges(pl.testRows, pl.cfg.evalBatch))...)
	if err != nil {
		return err
	}
	pl.p.printf("submitted %d evaluate calls of %d test images each", len(evals), pl.cfg.evalBatch)
	if err := pl.awaitTrain(ctx, train); err != nil {
		return err
	}
	if err := pl.awaitPick(ctx, pick); err != nil {
		return err
	}
	if err := pl.awaitEvaluate(ctx, evals); err != nil {
		return err
	}
	return pl.predict(ctx)
}

func (pl *pipeline) awaitPrep(ctx context.Context, h *trellis.Handle) error {
	s := newStage("prep", false)
	return pl.clock.await(ctx, s, []*trellis.Handle{h}, func(_ int, r *trellis.Result) error {
		var out prepOutput
		if err := parseStdout(r, &out); err != nil {
			return err
		}
		if out.Test < 1 {
			return fmt.Errorf("prep made an empty test set")
		}
		pl.testRows = out.Test
		pl.p.printf("prep done on %s: %d training rows in shards %v (the last for validation), %d test rows",
			r.Worker, out.Train, out.Shards, out.Test)
		return nil
	})
}

func (pl *pipeline) awaitTrain(ctx context.Context, hs []*trellis.Handle) error {
	s := newStage("train", false)
	return pl.clock.await(ctx, s, hs, func(i int, r *trellis.Result) error {
		pl.p.printf("%s done on %s (%d/%d, ran %.2fs)", r.Name, r.Worker, s.count, len(hs), r.RunTime.Seconds())
		return nil
	})
}

func (pl *pipeline) awaitPick(ctx context.Context, h *trellis.Handle) error {
	s := newStage("pick", false)
	return pl.clock.await(ctx, s, []*trellis.Handle{h}, func(_ int, r *trellis.Result) error {
		var out pickOutput
		if err := parseStdout(r, &out); err != nil {
			return err
		}
		best, err := pl.g.bestConfig(out)
		if err != nil {
			return err
		}
		pl.best, pl.validation = best, out.Accuracy
		pl.p.printf("pick done on %s: best lr=%g l2=%g, validation accuracy %.4f", r.Worker, best.LearningRate, best.L2, out.Accuracy)
		return nil
	})
}

func (pl *pipeline) awaitEvaluate(ctx context.Context, hs []*trellis.Handle) error {
	s := newStage("evaluate", true)
	err := pl.clock.await(ctx, s, hs, func(_ int, r *trellis.Result) error {
		var ev evaluation
		if err := pl.decodeAnswer(r, &ev, &ev.instanceInfo); err != nil {
			return err
		}
		pl.correct += ev.Correct
		pl.evaluated += ev.Total
		return nil
	})
	if err != nil {
		return err
	}
	if pl.evaluated != pl.testRows {
		return fmt.Errorf("evaluate saw %d test rows, want %d", pl.evaluated, pl.testRows)
	}
	pl.p.printf("evaluate: %d calls done on %s: %d/%d correct", s.count, s.where(), pl.correct, pl.evaluated)
	return nil
}

// predict runs batch inference over the test set and checks that its
// labels agree with evaluate's count, against the test labels fetched from
// the cluster.
func (pl *pipeline) predict(ctx context.Context) error {
	rs := ranges(pl.testRows, pl.cfg.predictBatch)
	pl.clock.mark = time.Now()
	hs, err := pl.c.Submit(ctx, callTasks("predict", rs)...)
	if err != nil {
		return err
	}
	labels := make([]int, pl.testRows)
	s := newStage("predict", true)
	err = pl.clock.await(ctx, s, hs, func(i int, r *trellis.Result) error {
		var pr predictions
		if err := pl.decodeAnswer(r, &pr, &pr.instanceInfo); err != nil {
			return err
		}
		if len(pr.Labels) != rs[i].To-rs[i].From {
			return fmt.Errorf("predict %v: %d labels", rs[i], len(pr.Labels))
		}
		copy(labels[rs[i].From:], pr.Labels)
		return nil
	})
	if err != nil {
		return err
	}
	right, err := pl.countCorrect(ctx, labels)
	if err != nil {
		return err
	}
	pl.p.printf("predict: %d calls done on %s: %d labels, %d right", s.count, s.where(), len(labels), right)
	if right != pl.correct {
		return fmt.Errorf("predict got %d test images right, evaluate %d", right, pl.correct)
	}
	return nil
}

// countCorrect fetches the test set, a temp file on some worker, and
// counts the labels that match it.
func (pl *pipeline) countCorrect(ctx context.Context, labels []int) (int, error) {
	dir, err := os.MkdirTemp("", "trellis-ml-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "test.csv")
	if err := pl.c.Fetch(ctx, pl.g.test, path); err != nil {
		return 0, err
	}
	test, err := digits.Load(path)
	if err != nil {
		return 0, err
	}
	if test.Len() != len(labels) {
		return 0, fmt.Errorf("fetched test set has %d rows, want %d", test.Len(), len(labels))
	}
	right := 0
	for i, y := range test.Y {
		if labels[i] == y {
			right++
		}
	}
	return right, nil
}

// decodeAnswer decodes a call's result into v and notes the instance that
// answered.
func (pl *pipeline) decodeAnswer(r *trellis.Result, v any, info *instanceInfo) error {
	if err := json.Unmarshal(r.Output, v); err != nil {
		return fmt.Errorf("%s: result %q: %w", r.Name, r.Output, err)
	}
	in := pl.instances[info.Instance]
	if in == nil {
		in = &instance{worker: r.Worker}
		pl.instances[info.Instance] = in
	}
	in.setups = max(in.setups, info.Setups)
	return nil
}

// ranges cuts rows 0..n-1 into consecutive ranges of at most size rows.
func ranges(n, size int) []rowRange {
	var rs []rowRange
	for from := 0; from < n; from += size {
		rs = append(rs, rowRange{From: from, To: min(from+size, n)})
	}
	return rs
}

// callTasks returns a call of function per range.
func callTasks(function string, rs []rowRange) []*trellis.Task {
	calls := make([]*trellis.Task, len(rs))
	for i, r := range rs {
		args, _ := json.Marshal(r) // two ints: cannot fail
		calls[i] = trellis.NewCall(libraryName, function, args)
	}
	return calls
}
