// Command pick chooses the most accurate of several models:
//
//	pick -test test.csv -out best.json model-*.json
//
// It evaluates every model on the labelled rows of -test (a test set or a
// held-out validation shard), copies the best model file byte for byte to
// -out (the first given wins a tie) and prints one line of JSON naming it,
// with its accuracy and every candidate's.
package main

import (
	"fmt"
	"os"

	"trellis/examples/ml/steps"
)

func main() {
	if err := steps.Pick(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pick:", err)
		os.Exit(1)
	}
}
