// Package bench holds the drivers behind `trellis bench …`: each runs one
// workload, measures it together with a baseline taken in the same run
// (this machine is noisy, so only ratios within one run mean much), and
// returns the figures as one JSON-encodable struct.
package bench
