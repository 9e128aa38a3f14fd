// Command prep splits the digits data into a test set and training shards:
//
//	prep -data digits.csv.gz -test-fraction 0.25 -seed 1 -shards 4 -out DIR
//
// writes DIR/train-0.csv … DIR/train-3.csv and DIR/test.csv (plain CSV in the
// source format) and prints one line of JSON with the row counts.
package main

import (
	"fmt"
	"os"

	"trellis/examples/ml/steps"
)

func main() {
	if err := steps.Prep(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "prep:", err)
		os.Exit(1)
	}
}
