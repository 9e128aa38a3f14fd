package steps

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"trellis/examples/ml/digits"
)

// Prep splits the digits data into a test set and training shards:
//
//	prep -data digits.csv.gz -test-fraction 0.25 -seed 1 -shards 4 -out DIR
//
// writes DIR/train-0.csv … DIR/train-3.csv and DIR/test.csv (plain CSV in the
// source format) and prints one line of JSON with the row counts.
func Prep(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("prep", flag.ContinueOnError)
	data := fs.String("data", "digits.csv.gz", "input CSV, gzipped or plain")
	frac := fs.Float64("test-fraction", 0.25, "fraction of rows held out as the test set")
	seed := fs.Int64("seed", 1, "seed of the shuffle")
	shards := fs.Int("shards", 4, "number of training shards")
	out := fs.String("out", ".", "output directory (created if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *shards < 1 || *frac < 0 || *frac >= 1 {
		return fmt.Errorf("usage: prep [-data F] [-test-fraction 0..1) [-seed N] [-shards N>=1] [-out DIR]")
	}
	d, err := digits.Load(*data)
	if err != nil {
		return err
	}
	train, test := digits.Split(d, *frac, *seed)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := digits.WriteFile(filepath.Join(*out, "test.csv"), test); err != nil {
		return err
	}
	var sizes []int
	for i, s := range digits.Shard(train, *shards) {
		if err := digits.WriteFile(filepath.Join(*out, fmt.Sprintf("train-%d.csv", i)), s); err != nil {
			return err
		}
		sizes = append(sizes, s.Len())
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"rows": d.Len(), "train": train.Len(), "test": test.Len(), "shards": sizes, "out": *out,
	})
}
