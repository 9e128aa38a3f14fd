// Command pipeline is the trellis ML example end to end, on an embedded
// cluster: it prepares and shards the digits data (a command task), trains a
// sweep of models (command tasks whose models are temp files that stay on
// the workers), picks the best on a validation shard (a command task), then
// installs a library that loads the test set and the best model once and
// runs evaluation and batch inference as many function calls.
//
//	go run ./examples/ml/pipeline [-workers 2] [-sweep 6]
//
// It prints progress, the test accuracy, where each step ran, the time of
// each modality and the number of library set-ups, and, as its last line,
// one JSON object: {"accuracy":…,"tasks":…,"calls":…,"seconds":…,…}. It
// exits with status 1 if the test accuracy is under -min-accuracy.
//
// The same binary is every program of the pipeline: run with a hidden first
// argument it is a step (prep, train, pick) or the library (see hidden.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"trellis/examples/ml/digits"
)

func main() {
	if code, ok := serveHidden(os.Args[1:]); ok {
		os.Exit(code)
	}
	cfg, timeout := parseFlags()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		if errors.Is(err, errLowAccuracy) {
			fmt.Fprintln(os.Stderr, "pipeline: FAILED: the model is not good enough")
		}
		os.Exit(1)
	}
}

// config is what one run of the pipeline does.
type config struct {
	workers      int     // local workers of the embedded cluster
	cores        float64 // each worker's cores
	sweep        int     // how many points of digits.Sweep() to train
	evalBatch    int     // test images per evaluate call
	predictBatch int     // test images per predict call
	minAccuracy  float64 // below it the run fails
	data         string  // the digits file; "" means the copy built into the binary
}

func defaultConfig() config {
	// One core per worker by default, whatever the machine: the trains then
	// spread over the workers and their files move between them, as they
	// would on a real cluster, instead of all fitting on the first worker.
	return config{workers: 2, cores: 1, sweep: len(digits.Sweep()), evalBatch: 20, predictBatch: 10, minAccuracy: 0.90}
}

func parseFlags() (config, time.Duration) {
	cfg := defaultConfig()
	flag.IntVar(&cfg.workers, "workers", cfg.workers, "local workers in the embedded cluster")
	flag.Float64Var(&cfg.cores, "cores", cfg.cores, "cores of each worker")
	flag.IntVar(&cfg.sweep, "sweep", cfg.sweep, fmt.Sprintf("sweep points to train (1..%d)", len(digits.Sweep())))
	flag.IntVar(&cfg.evalBatch, "eval-batch", cfg.evalBatch, "test images per evaluate call")
	flag.IntVar(&cfg.predictBatch, "predict-batch", cfg.predictBatch, "test images per predict call")
	flag.Float64Var(&cfg.minAccuracy, "min-accuracy", cfg.minAccuracy, "fail if the test accuracy is lower")
	flag.StringVar(&cfg.data, "data", "", "digits CSV file, gzipped or plain (default: the copy built in)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	return cfg, *timeout
}

func (cfg config) check() error {
	switch {
	case cfg.workers < 1:
		return fmt.Errorf("-workers %d: want at least 1", cfg.workers)
	case cfg.cores < 1:
		return fmt.Errorf("-cores %g: want at least 1 (a task takes one)", cfg.cores)
	case cfg.sweep < 1 || cfg.sweep > len(digits.Sweep()):
		return fmt.Errorf("-sweep %d: want 1..%d", cfg.sweep, len(digits.Sweep()))
	case cfg.evalBatch < 1 || cfg.predictBatch < 1:
		return fmt.Errorf("-eval-batch and -predict-batch must be at least 1")
	}
	return nil
}
