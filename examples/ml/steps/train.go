package steps

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"trellis/examples/ml/digits"
)

// Train fits a softmax-regression model to one or more shard files:
//
//	train -lr 0.5 -l2 1e-4 -epochs 100 -seed 1 -out model.json train-*.csv
//
// The shards are read in the order given (patterns are expanded here too,
// for runs without a shell) and trained on as one dataset. It writes the
// model as JSON and prints one line of JSON with the training accuracy.
func Train(args []string, stdout io.Writer) error {
	def := digits.DefaultConfig()
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	var cfg digits.TrainConfig
	fs.Float64Var(&cfg.LearningRate, "lr", def.LearningRate, "initial learning rate (falls linearly to 0)")
	fs.Float64Var(&cfg.L2, "l2", def.L2, "L2 weight decay")
	fs.IntVar(&cfg.Epochs, "epochs", def.Epochs, "passes over the data")
	fs.Int64Var(&cfg.Seed, "seed", def.Seed, "seed of the row order")
	fs.IntVar(&cfg.BatchSize, "batch", def.BatchSize, "mini-batch size")
	out := fs.String("out", "model.json", "output model file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: train [flags] SHARD.csv...")
	}
	files, err := digits.ExpandPaths(fs.Args())
	if err != nil {
		return err
	}
	d, err := digits.LoadAll(files...)
	if err != nil {
		return err
	}
	if d.Len() == 0 {
		return fmt.Errorf("no rows in %v", files)
	}
	m := digits.Train(d, cfg)
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := m.Save(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"train_accuracy": digits.Accuracy(m, d), "rows": d.Len(), "files": len(files),
		"config": cfg, "out": *out,
	})
}
