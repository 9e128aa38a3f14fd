package steps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"testing"

	"trellis/examples/ml/digits"
)

func TestTrain(t *testing.T) {
	d, err := digits.Load("../data/digits.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	train, _ := digits.Split(d, 0.25, 1)
	for i, s := range digits.Shard(train, 3) {
		if err := digits.WriteFile(fmt.Sprintf("train-%d.csv", i), s); err != nil {
			t.Fatal(err)
		}
	}
	var stdout bytes.Buffer
	// The pattern is passed unexpanded, as a command task without a shell would.
	if err := Train([]string{"-lr", "0.5", "-l2", "1e-4", "-epochs", "20", "-seed", "1", "-out", "model.json", "train-*.csv"}, &stdout); err != nil {
		t.Fatal(err)
	}
	var got struct {
		TrainAccuracy float64 `json:"train_accuracy"`
		Rows, Files   int
		Config        digits.TrainConfig
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if got.Rows != 1348 || got.Files != 3 || got.TrainAccuracy < 0.95 || got.Config.Epochs != 20 {
		t.Errorf("stdout %s", stdout.String())
	}
	f, err := os.Open("model.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := digits.LoadModel(f)
	if err != nil {
		t.Fatal(err)
	}
	if a := digits.Accuracy(m, train); a != got.TrainAccuracy {
		t.Errorf("model file accuracy %v, printed %v", a, got.TrainAccuracy)
	}
	if want := digits.Train(train, got.Config); !reflect.DeepEqual(m.Weights, want.Weights) {
		t.Error("the command's model differs from digits.Train on the same rows")
	}
}

func TestTrainErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile("empty.csv", nil, 0o644)
	os.WriteFile("bad.csv", []byte("1,2,3\n"), 0o644)
	for _, args := range [][]string{
		{},
		{"train-*.csv"},
		{"missing.csv"},
		{"empty.csv"},
		{"bad.csv"},
	} {
		if err := Train(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
