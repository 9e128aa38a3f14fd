package steps

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"trellis/examples/ml/digits"
)

// candidate is one model's score in Pick's output.
type candidate struct {
	File     string  `json:"file"`
	Accuracy float64 `json:"accuracy"`
}

// Pick chooses the most accurate of several models:
//
//	pick -test test.csv -out best.json model-*.json
//
// It evaluates every model on the labelled rows of -test (a test set or a
// held-out validation shard), copies the best model file byte for byte to
// -out (the first given wins a tie) and prints one line of JSON naming it,
// with its accuracy and every candidate's.
func Pick(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pick", flag.ContinueOnError)
	testPath := fs.String("test", "test.csv", "labelled rows to evaluate on")
	out := fs.String("out", "best.json", "where to copy the best model")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: pick [-test F] [-out F] MODEL.json...")
	}
	files, err := digits.ExpandPaths(fs.Args())
	if err != nil {
		return err
	}
	test, err := digits.Load(*testPath)
	if err != nil {
		return err
	}
	if test.Len() == 0 {
		return fmt.Errorf("%s: no rows", *testPath)
	}
	var cands []candidate
	best, bestRaw := -1, []byte(nil)
	for i, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		m, err := digits.LoadModel(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		cands = append(cands, candidate{file, digits.Accuracy(m, test)})
		if best < 0 || cands[i].Accuracy > cands[best].Accuracy {
			best, bestRaw = i, raw
		}
	}
	if err := os.WriteFile(*out, bestRaw, 0o644); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"best": files[best], "accuracy": cands[best].Accuracy, "rows": test.Len(),
		"out": *out, "candidates": cands,
	})
}
