package steps

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPrep(t *testing.T) {
	src, err := filepath.Abs("../data/digits.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	var stdout bytes.Buffer
	if err := Prep([]string{"-data", src, "-test-fraction", "0.25", "-seed", "1", "-shards", "4", "-out", "split"}, &stdout); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rows, Train, Test int
		Shards            []int
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || strings.Count(stdout.String(), "\n") != 1 {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if got.Rows != 1797 || got.Train != 1348 || got.Test != 449 || !slices.Equal(got.Shards, []int{337, 337, 337, 337}) {
		t.Errorf("counts %+v", got)
	}

	// The output rows are exactly the source rows, each once.
	f, _ := os.Open(src)
	defer f.Close()
	zr, _ := gzip.NewReader(f)
	raw, _ := io.ReadAll(zr)
	want := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var all []string
	for _, name := range []string{"test.csv", "train-0.csv", "train-1.csv", "train-2.csv", "train-3.csv"} {
		b, err := os.ReadFile(filepath.Join("split", name))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	slices.Sort(all)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Error("the output rows are not the source rows")
	}

	// Deterministic: a second run writes the same bytes.
	first, _ := os.ReadFile("split/train-2.csv")
	if err := Prep([]string{"-data", src, "-out", "again"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile("again/train-2.csv"); !bytes.Equal(first, second) {
		t.Error("two runs with seed 1 differ")
	}
}

func TestPrepErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"-data", "missing.csv.gz"},
		{"-shards", "0"},
		{"-test-fraction", "1"},
		{"extra"},
		{"-no-such-flag"},
	} {
		if err := Prep(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
