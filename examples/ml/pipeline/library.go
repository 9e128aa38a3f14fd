package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"

	"trellis/examples/ml/digits"
	"trellis/sdk/go/library"
)

// The library's name and the paths of its input files in its sandbox.
const (
	libraryName = "digits"
	libTestPath = "test.csv"
	libModel    = "model.json"
)

// rowRange is the argument of both functions: test rows From..To-1.
type rowRange struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// instanceInfo, in every answer, names the library process that gave it and
// how many times that process has loaded its data, so that the pipeline can
// count set-ups per instance (one each, or the set-up is not shared).
type instanceInfo struct {
	Instance string `json:"instance"`
	Setups   int64  `json:"setups"`
}

// evaluation is the answer of evaluate.
type evaluation struct {
	Correct int `json:"correct"`
	Total   int `json:"total"`
	instanceInfo
}

// predictions is the answer of predict: one label per row of the range.
type predictions struct {
	Labels []int `json:"labels"`
	instanceInfo
}

// classifier is the state of one library process: the test set and the
// model, loaded once by setup and read by every call.
type classifier struct {
	id     string
	setups atomic.Int64
	test   digits.Dataset
	model  digits.Model
}

// serveLibrary serves the digits library on stdin and stdout, and exits.
func serveLibrary() {
	c := &classifier{id: newInstanceID()}
	l := library.New(libraryName)
	l.Setup(c.setup)
	l.Register("evaluate", library.JSON(c.evaluate))
	l.Register("predict", library.JSON(c.predict))
	library.Main(l)
}

func newInstanceID() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
}

// setup loads the test set and the model from the sandbox.
func (c *classifier) setup(context.Context) error {
	test, err := digits.Load(libTestPath)
	if err != nil {
		return err
	}
	f, err := os.Open(libModel)
	if err != nil {
		return err
	}
	defer f.Close()
	model, err := digits.LoadModel(f)
	if err != nil {
		return err
	}
	c.test, c.model = test, model
	c.setups.Add(1)
	return nil
}

func (c *classifier) info() instanceInfo {
	return instanceInfo{Instance: c.id, Setups: c.setups.Load()}
}

// rows returns the test rows of r, or an error if r is not within the set.
func (c *classifier) rows(r rowRange) (digits.Dataset, error) {
	if r.From < 0 || r.From > r.To || r.To > c.test.Len() {
		return digits.Dataset{}, fmt.Errorf("rows %d..%d: the test set has rows 0..%d", r.From, r.To, c.test.Len())
	}
	return digits.Dataset{X: c.test.X[r.From:r.To], Y: c.test.Y[r.From:r.To]}, nil
}

// evaluate counts the rows of r that the model classifies correctly.
func (c *classifier) evaluate(_ context.Context, r rowRange) (evaluation, error) {
	d, err := c.rows(r)
	if err != nil {
		return evaluation{}, err
	}
	ev := evaluation{Total: d.Len(), instanceInfo: c.info()}
	for i, label := range c.model.PredictBatch(d.X) {
		if label == d.Y[i] {
			ev.Correct++
		}
	}
	return ev, nil
}

// predict returns the model's label for each row of r.
func (c *classifier) predict(_ context.Context, r rowRange) (predictions, error) {
	d, err := c.rows(r)
	if err != nil {
		return predictions{}, err
	}
	return predictions{Labels: c.model.PredictBatch(d.X), instanceInfo: c.info()}, nil
}
