package steps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"

	"trellis/examples/ml/digits"
)

func TestPick(t *testing.T) {
	d, err := digits.Load("../data/digits.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	train, test := digits.Split(d, 0.25, 1)
	if err := digits.WriteFile("test.csv", test); err != nil {
		t.Fatal(err)
	}
	// model-0 barely trained, model-1 trained, model-2 the zero model.
	models := []digits.Model{
		digits.Train(digits.Dataset{X: train.X[:30], Y: train.Y[:30]}, digits.TrainConfig{LearningRate: 0.5, Epochs: 1}),
		digits.Train(train, digits.TrainConfig{LearningRate: 0.5, Epochs: 10, Seed: 1}),
		digits.NewModel(),
	}
	for i, m := range models {
		f, _ := os.Create(fmt.Sprintf("model-%d.json", i))
		if err := m.Save(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var stdout bytes.Buffer
	if err := Pick([]string{"-test", "test.csv", "-out", "best.json", "model-*.json"}, &stdout); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Best       string
		Accuracy   float64
		Candidates []candidate
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if got.Best != "model-1.json" || got.Accuracy != digits.Accuracy(models[1], test) || len(got.Candidates) != 3 {
		t.Errorf("stdout %s", stdout.String())
	}
	best, _ := os.ReadFile("best.json")
	want, _ := os.ReadFile("model-1.json")
	if !bytes.Equal(best, want) {
		t.Error("best.json is not a copy of model-1.json")
	}

	// A tie goes to the first file given.
	os.WriteFile("copy.json", want, 0o644)
	stdout.Reset()
	if err := Pick([]string{"-out", "tie.json", "model-2.json", "copy.json", "model-1.json"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got.Best != "copy.json" {
		t.Errorf("tie: stdout %s", stdout.String())
	}

	os.WriteFile("broken.json", []byte("{}"), 0o644)
	for _, args := range [][]string{
		{},
		{"model-9*.json"},
		{"-test", "missing.csv", "model-1.json"},
		{"model-1.json", "broken.json"},
	} {
		if err := Pick(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
