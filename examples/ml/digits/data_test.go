package digits

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

const dataPath = "../data/digits.csv.gz"

var (
	realOnce sync.Once
	realData Dataset
	realErr  error
)

// real loads the shipped data once per test binary.
func real(t *testing.T) Dataset {
	t.Helper()
	realOnce.Do(func() { realData, realErr = Load(dataPath) })
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realData
}

func TestLoadReal(t *testing.T) {
	d := real(t)
	if d.Len() != 1797 || len(d.X) != 1797 {
		t.Fatalf("rows: %d images, %d labels; want 1797", len(d.X), len(d.Y))
	}
	counts := make([]int, Classes)
	for i, x := range d.X {
		if len(x) != Features {
			t.Fatalf("row %d: %d features", i, len(x))
		}
		for j, v := range x {
			if v < 0 || v > 1 {
				t.Fatalf("row %d pixel %d: %v not in 0..1", i, j, v)
			}
		}
		if d.Y[i] < 0 || d.Y[i] >= Classes {
			t.Fatalf("row %d: label %d", i, d.Y[i])
		}
		counts[d.Y[i]]++
	}
	for c, n := range counts {
		if n < 170 || n > 190 { // about 180 of each digit
			t.Errorf("label %d: %d rows", c, n)
		}
	}
	// First row of the file: 0,0,5,13,9,1,0,0,... label 0.
	if got := d.X[0][:4]; !slices.Equal(got, []float64{0, 0, 5.0 / 16, 13.0 / 16}) || d.Y[0] != 0 {
		t.Errorf("first row starts %v label %d", got, d.Y[0])
	}
}

// WriteCSV of the loaded data reproduces the source file byte for byte.
func TestWriteCSVReproducesSource(t *testing.T) {
	f, err := os.Open(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := WriteCSV(&got, real(t)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("WriteCSV output (%d bytes) differs from the source (%d bytes)", got.Len(), len(want))
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	d := real(t)
	_, sample := Split(d, 0.05, 3)
	// Values that are not multiples of 1/16 survive too.
	sample.X[0] = slices.Clone(sample.X[0])
	sample.X[0][5] = 0.123456789
	dir := t.TempDir()
	for _, name := range []string{"s.csv", "s.csv.gz"} {
		path := filepath.Join(dir, name)
		if err := WriteFile(path, sample); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if gz := raw[0] == 0x1f && raw[1] == 0x8b; gz != strings.HasSuffix(name, ".gz") {
			t.Errorf("%s: gzipped = %v", name, gz)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, sample) {
			t.Errorf("%s: read back differs", name)
		}
	}
}

func TestReadCSVBlankLinesAndEmpty(t *testing.T) {
	row := strings.Repeat("16,", Features) + "9"
	d, err := ReadCSV(strings.NewReader("\n" + row + "\r\n\n  \n" + row + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.Y[1] != 9 || d.X[0][63] != 1 {
		t.Errorf("got %d rows %v", d.Len(), d.Y)
	}
	d, err = ReadCSV(strings.NewReader(""))
	if err != nil || d.Len() != 0 {
		t.Errorf("empty input: %v rows, %v", d.Len(), err)
	}
}

func TestReadCSVErrors(t *testing.T) {
	good := strings.Repeat("0,", Features) + "3"
	withPixel := func(p string) string { return "1," + p + strings.Repeat(",0", Features-2) + ",3" }
	for _, tc := range []struct {
		name, input, want string
	}{
		{"too few fields", good + "\n" + strings.Repeat("0,", Features-1) + "3\n", "line 2: want 65 fields (64 pixels and a label), got 64"},
		{"too many fields", "0," + good, "line 1: want 65 fields"},
		{"not a number", good + "\n\n" + withPixel("x"), `line 3: pixel 2: "x" is not a number in 0..16`},
		{"pixel too big", withPixel("17"), `line 1: pixel 2: "17" is not a number`},
		{"negative pixel", withPixel("-1"), `pixel 2: "-1"`},
		{"NaN pixel", withPixel("NaN"), `pixel 2: "NaN"`},
		{"empty pixel", withPixel(""), `pixel 2: ""`},
		{"label too big", strings.Repeat("0,", Features) + "10", `line 1: label "10" is not an integer in 0..9`},
		{"fractional label", strings.Repeat("0,", Features) + "1.5", `label "1.5"`},
		{"header", "p1,p2\n" + good, "line 1: want 65 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.csv.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(strings.Repeat("0,", Features) + "1\n1,2,3\n"))
	zw.Close()
	os.WriteFile(bad, buf.Bytes(), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "bad.csv.gz: digits: line 2: want 65 fields") {
		t.Errorf("malformed gzipped row: %v", err)
	}
	// A truncated gzip stream is an error, not a short dataset.
	os.WriteFile(bad, buf.Bytes()[:buf.Len()-10], 0o644)
	if _, err := Load(bad); err == nil {
		t.Error("truncated gzip: no error")
	}
}

func TestWriteCSVRejectsBadDataset(t *testing.T) {
	for _, d := range []Dataset{
		{X: [][]float64{make([]float64, Features)}, Y: nil},
		{X: [][]float64{make([]float64, 3)}, Y: []int{1}},
		{X: [][]float64{make([]float64, Features)}, Y: []int{10}},
	} {
		if err := WriteCSV(io.Discard, d); err == nil {
			t.Errorf("no error for %d images, %d labels", len(d.X), len(d.Y))
		}
	}
}

func TestSplit(t *testing.T) {
	d := real(t)
	train, test := Split(d, 0.25, 1)
	if train.Len() != 1348 || test.Len() != 449 {
		t.Fatalf("sizes %d/%d, want 1348/449", train.Len(), test.Len())
	}
	// Every row lands in exactly one part.
	seen := map[*float64]int{}
	for _, part := range []Dataset{train, test} {
		for _, x := range part.X {
			seen[&x[0]]++
		}
	}
	if len(seen) != d.Len() {
		t.Errorf("%d distinct rows, want %d", len(seen), d.Len())
	}
	// Deterministic for a seed, and pinned: a change of the shuffle would
	// silently change every figure of the example.
	train2, test2 := Split(d, 0.25, 1)
	if !reflect.DeepEqual(train, train2) || !reflect.DeepEqual(test, test2) {
		t.Error("same seed, different split")
	}
	if want := []int{2, 3, 1, 4, 7, 3, 5, 2, 9, 0}; !slices.Equal(test.Y[:10], want) {
		t.Errorf("first test labels %v, want %v", test.Y[:10], want)
	}
	if _, test3 := Split(d, 0.25, 2); reflect.DeepEqual(test.Y, test3.Y) {
		t.Error("seeds 1 and 2 give the same split")
	}
	if tr, te := Split(d, 0, 1); tr.Len() != d.Len() || te.Len() != 0 {
		t.Errorf("fraction 0: %d/%d", tr.Len(), te.Len())
	}
	if tr, te := Split(d, 1, 1); tr.Len() != 0 || te.Len() != d.Len() {
		t.Errorf("fraction 1: %d/%d", tr.Len(), te.Len())
	}
}

func TestShard(t *testing.T) {
	d := real(t)
	train, _ := Split(d, 0.25, 1)
	shards := Shard(train, 4)
	var sizes []int
	for _, s := range shards {
		sizes = append(sizes, s.Len())
	}
	if !slices.Equal(sizes, []int{337, 337, 337, 337}) {
		t.Errorf("sizes %v", sizes)
	}
	if !reflect.DeepEqual(Concat(shards...), train) {
		t.Error("shards do not concatenate back to the dataset")
	}
	sizes = nil
	for _, s := range Shard(Dataset{X: d.X[:7], Y: d.Y[:7]}, 3) {
		sizes = append(sizes, s.Len())
	}
	if !slices.Equal(sizes, []int{3, 2, 2}) {
		t.Errorf("7 rows in 3 shards: %v", sizes)
	}
	if got := Shard(Dataset{X: d.X[:2], Y: d.Y[:2]}, 4); len(got) != 4 || got[2].Len() != 0 {
		t.Errorf("more shards than rows: %d shards", len(got))
	}
	if got := Shard(train, 0); len(got) != 1 || got[0].Len() != train.Len() {
		t.Errorf("n=0: %d shards", len(got))
	}
	// Appending to a shard does not overwrite its neighbour.
	s := Shard(Dataset{X: d.X[:4], Y: slices.Clone(d.Y[:4])}, 2)
	s[0].Y = append(s[0].Y, 9)
	if s[1].Y[0] != d.Y[2] {
		t.Error("append to shard 0 changed shard 1")
	}
}

func TestExpandPaths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"train-1.csv", "train-0.csv", "odd[1].csv"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := ExpandPaths([]string{filepath.Join(dir, "train-*.csv"), filepath.Join(dir, "odd[1].csv")})
	want := []string{filepath.Join(dir, "train-0.csv"), filepath.Join(dir, "train-1.csv"), filepath.Join(dir, "odd[1].csv")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	if _, err := ExpandPaths([]string{filepath.Join(dir, "model-*.json")}); err == nil {
		t.Error("unmatched pattern: no error")
	}
}
