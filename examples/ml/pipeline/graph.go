package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"trellis"
	"trellis/examples/ml/digits"
)

const (
	dataName     = "digits.csv.gz"
	testFraction = 0.25
	splitSeed    = 1
	// prep writes trainShards+1 shards: the last is the validation set on
	// which pick compares the models, so the test set stays unseen.
	trainShards = 3
)

// graph is the task part of the pipeline: prep, the sweep of trains, pick.
// Every file between them is a temp file: it stays on the worker that made
// it and moves worker to worker as readers need it.
type graph struct {
	prep  *trellis.Task
	train []*trellis.Task
	pick  *trellis.Task
	sweep []digits.TrainConfig // of train, in order
	test  *trellis.File        // test.csv, made by prep, read by the library
	best  *trellis.File        // the best model, made by pick, read by the library
}

func newGraph(self string, data *trellis.File, sweep []digits.TrainConfig) *graph {
	g := &graph{sweep: sweep, test: trellis.Temp(), best: trellis.Temp()}
	g.prep = stepTask("prep", stepCommand(self, "prep", "-data", dataName, "-test-fraction", formatFloat(testFraction),
		"-seed", strconv.Itoa(splitSeed), "-shards", strconv.Itoa(trainShards+1), "-out", "."))
	g.prep.AddInput(data, dataName).AddOutput(g.test, "test.csv")
	shards := make([]*trellis.File, trainShards)
	for i := range shards {
		shards[i] = trellis.Temp()
		g.prep.AddOutput(shards[i], shardName(i))
	}
	validation := trellis.Temp()
	g.prep.AddOutput(validation, shardName(trainShards))

	g.pick = stepTask("pick", stepCommand(self, "pick", "-test", "validation.csv", "-out", "best.json", "model-*.json"))
	g.pick.AddInput(validation, "validation.csv").AddOutput(g.best, "best.json")
	for i, cfg := range sweep {
		t := stepTask(trainName(cfg), stepCommand(self, "train", "-lr", formatFloat(cfg.LearningRate), "-l2", formatFloat(cfg.L2),
			"-epochs", strconv.Itoa(cfg.Epochs), "-seed", strconv.FormatInt(cfg.Seed, 10), "-batch", strconv.Itoa(cfg.BatchSize),
			"-out", "model.json", "train-*.csv"))
		for j, s := range shards {
			t.AddInput(s, shardName(j))
		}
		model := trellis.Temp()
		t.AddOutput(model, "model.json")
		g.pick.AddInput(model, modelName(i))
		g.train = append(g.train, t)
	}
	return g
}

// tasks returns every task, for one Submit: the manager starts each when
// its inputs exist.
func (g *graph) tasks() []*trellis.Task {
	return append(append([]*trellis.Task{g.prep}, g.train...), g.pick)
}

// library is the digits library, reading the test set and the best model.
// It is installed before pick has run: the manager starts instances once
// the model exists.
func (g *graph) library(self string, maxInstances int) *trellis.Library {
	return &trellis.Library{Name: libraryName, Command: shellQuote(self) + " " + libraryArg,
		Inputs:       []trellis.Mount{{File: g.test, Path: libTestPath}, {File: g.best, Path: libModel}},
		Slots:        2,
		MaxInstances: maxInstances,
		Resources:    trellis.Resources{Cores: 1, MemoryMB: 256},
	}
}

func stepTask(name, command string) *trellis.Task {
	t := trellis.NewTask(command)
	t.Name = name
	t.Resources = trellis.Resources{Cores: 1, MemoryMB: 256}
	return t
}

func shardName(i int) string { return fmt.Sprintf("train-%d.csv", i) }

// modelName numbers the models so that pick's lexical order is the sweep's.
func modelName(i int) string { return fmt.Sprintf("model-%03d.json", i) }

func trainName(cfg digits.TrainConfig) string {
	return fmt.Sprintf("train lr=%g l2=%g", cfg.LearningRate, cfg.L2)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// prepOutput is the line of JSON that prep prints.
type prepOutput struct {
	Test   int   `json:"test"`
	Train  int   `json:"train"`
	Shards []int `json:"shards"`
}

// pickOutput is the line of JSON that pick prints.
type pickOutput struct {
	Best     string  `json:"best"`     // the chosen model's file name
	Accuracy float64 `json:"accuracy"` // on the validation shard
}

// parseStdout decodes the one line of JSON that a step printed.
func parseStdout(r *trellis.Result, v any) error {
	if r.StdoutTruncated {
		return fmt.Errorf("%s: stdout truncated", r.Name)
	}
	if err := json.Unmarshal(r.Stdout, v); err != nil {
		return fmt.Errorf("%s: stdout %q: %w", r.Name, r.Stdout, err)
	}
	return nil
}

// bestConfig returns the sweep point whose model pick chose.
func (g *graph) bestConfig(out pickOutput) (digits.TrainConfig, error) {
	for i, cfg := range g.sweep {
		if modelName(i) == out.Best {
			return cfg, nil
		}
	}
	return digits.TrainConfig{}, fmt.Errorf("pick chose %q, which is no model of the sweep", out.Best)
}
