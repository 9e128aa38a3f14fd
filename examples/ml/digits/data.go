// Package digits is the machine-learning core of the trellis ML example: it
// loads the handwritten-digits data (8x8 images, 64 pixels 0..16, labels
// 0..9), splits and shards it, writes and reads shards as CSV files, and
// trains, evaluates, saves and loads a softmax-regression classifier. It uses
// the standard library only and is deterministic for a given seed.
//
// File format (the source file and every shard): one row per image, no
// header, 64 pixel values on the 0..16 scale then the integer label, comma
// separated. In memory the pixels are scaled to 0..1 (divided by 16); writing
// multiplies back, so a written file of the original data has the original
// integer text and a read of it gives back bit-identical values.
package digits

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// Features is the number of pixels per image (8x8).
	Features = 64
	// Classes is the number of labels (digits 0..9).
	Classes = 10
	// PixelMax is the largest pixel value in the files; X holds value/PixelMax.
	PixelMax = 16
)

// Dataset is a set of labelled images: X[i] has Features values in 0..1 and
// Y[i] is its label in 0..Classes-1.
type Dataset struct {
	X [][]float64
	Y []int
}

// Len is the number of rows.
func (d Dataset) Len() int { return len(d.Y) }

// Load reads a digits CSV file, gzipped or plain (detected from its content).
func Load(path string) (Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return Dataset{}, fmt.Errorf("digits: %w", err)
	}
	defer f.Close()
	d, err := ReadCSV(f)
	if err != nil {
		return Dataset{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// LoadAll reads several files and concatenates them in the order given.
func LoadAll(paths ...string) (Dataset, error) {
	var parts []Dataset
	for _, p := range paths {
		d, err := Load(p)
		if err != nil {
			return Dataset{}, err
		}
		parts = append(parts, d)
	}
	return Concat(parts...), nil
}

// ReadCSV reads rows of 64 pixels (0..16) and a label (0..9). Input starting
// with the gzip magic bytes is decompressed. Blank lines are skipped; an empty
// input gives an empty Dataset. Malformed rows give an error naming the line.
func ReadCSV(r io.Reader) (Dataset, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Dataset{}, fmt.Errorf("digits: gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	var d Dataset
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		x, y, err := parseRow(text)
		if err != nil {
			return Dataset{}, fmt.Errorf("digits: line %d: %w", line, err)
		}
		d.X = append(d.X, x)
		d.Y = append(d.Y, y)
	}
	if err := sc.Err(); err != nil {
		return Dataset{}, fmt.Errorf("digits: after line %d: %w", line, err)
	}
	return d, nil
}

func parseRow(text string) ([]float64, int, error) {
	fields := strings.Split(text, ",")
	if len(fields) != Features+1 {
		return nil, 0, fmt.Errorf("want %d fields (%d pixels and a label), got %d", Features+1, Features, len(fields))
	}
	x := make([]float64, Features)
	for j := range Features {
		s := strings.TrimSpace(fields[j])
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > PixelMax {
			return nil, 0, fmt.Errorf("pixel %d: %q is not a number in 0..%d", j+1, s, PixelMax)
		}
		x[j] = v / PixelMax
	}
	s := strings.TrimSpace(fields[Features])
	y, err := strconv.Atoi(s)
	if err != nil || y < 0 || y >= Classes {
		return nil, 0, fmt.Errorf("label %q is not an integer in 0..%d", s, Classes-1)
	}
	return x, y, nil
}

// WriteCSV writes d as plain CSV in the file format (pixels on the 0..16 scale).
func WriteCSV(w io.Writer, d Dataset) error {
	if err := d.check(); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	buf := make([]byte, 0, 256)
	for i, x := range d.X {
		buf = buf[:0]
		for _, v := range x {
			buf = strconv.AppendFloat(buf, v*PixelMax, 'g', -1, 64)
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, int64(d.Y[i]), 10)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFile writes d to path with WriteCSV, gzipped when path ends in ".gz".
func WriteFile(path string, d Dataset) error {
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".gz") {
		zw := gzip.NewWriter(&buf)
		if err = WriteCSV(zw, d); err == nil {
			err = zw.Close()
		}
	} else {
		err = WriteCSV(&buf, d)
	}
	if err != nil {
		return fmt.Errorf("digits: %s: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func (d Dataset) check() error {
	if len(d.X) != len(d.Y) {
		return fmt.Errorf("digits: dataset has %d images but %d labels", len(d.X), len(d.Y))
	}
	for i, x := range d.X {
		if len(x) != Features {
			return fmt.Errorf("digits: row %d has %d features, want %d", i, len(x), Features)
		}
		if d.Y[i] < 0 || d.Y[i] >= Classes {
			return fmt.Errorf("digits: row %d has label %d, want 0..%d", i, d.Y[i], Classes-1)
		}
	}
	return nil
}

// Split shuffles the rows with seed and puts round(testFraction*len) of them
// in test and the rest in train. The result depends only on d and seed. Rows
// are shared with d, not copied.
func Split(d Dataset, testFraction float64, seed int64) (train, test Dataset) {
	n := d.Len()
	if math.IsNaN(testFraction) || testFraction < 0 {
		testFraction = 0
	}
	if testFraction > 1 {
		testFraction = 1
	}
	nTest := int(math.Round(testFraction * float64(n)))
	perm := newRNG(seed).perm(n)
	return subset(d, perm[nTest:]), subset(d, perm[:nTest])
}

// Shard cuts d into n contiguous parts whose sizes differ by at most one (the
// first parts get the extra rows); n < 1 counts as 1. Shard does not shuffle:
// Split first. Rows are shared with d.
func Shard(d Dataset, n int) []Dataset {
	if n < 1 {
		n = 1
	}
	out := make([]Dataset, n)
	size, extra := d.Len()/n, d.Len()%n
	start := 0
	for i := range out {
		end := start + size
		if i < extra {
			end++
		}
		out[i] = Dataset{X: d.X[start:end:end], Y: d.Y[start:end:end]}
		start = end
	}
	return out
}

// Concat joins datasets in order. Rows are shared with the parts.
func Concat(parts ...Dataset) Dataset {
	var d Dataset
	for _, p := range parts {
		d.X = append(d.X, p.X...)
		d.Y = append(d.Y, p.Y...)
	}
	return d
}

func subset(d Dataset, idx []int) Dataset {
	s := Dataset{X: make([][]float64, len(idx)), Y: make([]int, len(idx))}
	for i, j := range idx {
		s.X[i], s.Y[i] = d.X[j], d.Y[j]
	}
	return s
}

// rng is the one source of randomness. It draws from PCG, whose output for a
// seed is fixed by the math/rand/v2 documentation, and shuffles with its own
// Fisher-Yates, so results for a seed do not change with the Go release.
type rng struct{ src *rand.PCG }

func newRNG(seed int64) rng {
	return rng{rand.NewPCG(uint64(seed), 0x7472656c6c6973)} // "trellis"
}

// intn returns a value in [0, n) (multiply-shift; the bias is below n/2^64).
func (r rng) intn(n int) int {
	hi, _ := bits.Mul64(r.src.Uint64(), uint64(n))
	return int(hi)
}

// shuffle permutes p in place.
func (r rng) shuffle(p []int) {
	for i := len(p) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
}

// perm returns a random permutation of 0..n-1.
func (r rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r.shuffle(p)
	return p
}

// ErrEmpty is returned by functions that need at least one row.
var ErrEmpty = errors.New("digits: empty dataset")

// ExpandPaths returns the files named by args, in order. An argument that
// names an existing file is kept as is; otherwise, if it holds glob
// characters, it is replaced by its matches in lexical order (command tasks
// may run without a shell to expand "train-*.csv"). An argument that names
// nothing is an error.
func ExpandPaths(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if _, err := os.Stat(a); err == nil || !strings.ContainsAny(a, "*?[") {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("digits: %q: %w", a, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("digits: no file matches %q", a)
		}
		out = append(out, m...)
	}
	return out, nil
}
