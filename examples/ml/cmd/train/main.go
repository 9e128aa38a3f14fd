// Command train fits a softmax-regression model to one or more shard files:
//
//	train -lr 0.5 -l2 1e-4 -epochs 100 -seed 1 -out model.json train-*.csv
//
// The shards are read in the order given (patterns are expanded here too,
// for runs without a shell) and trained on as one dataset. It writes the
// model as JSON and prints one line of JSON with the training accuracy.
package main

import (
	"fmt"
	"os"

	"trellis/examples/ml/steps"
)

func main() {
	if err := steps.Train(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(1)
	}
}
