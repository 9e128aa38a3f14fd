package digits

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// ModelFormat names the JSON layout written by Model.Save.
const ModelFormat = "trellis-digits-softmax/1"

// DefaultBatchSize is the mini-batch size used when TrainConfig.BatchSize < 1.
const DefaultBatchSize = 32

// TrainConfig holds the hyperparameters of Train.
type TrainConfig struct {
	LearningRate float64 `json:"learning_rate"` // step size of gradient descent
	L2           float64 `json:"l2"`            // weight decay; the bias is not decayed
	Epochs       int     `json:"epochs"`        // passes over the data
	Seed         int64   `json:"seed"`          // order of the rows in each epoch
	BatchSize    int     `json:"batch_size"`    // rows per step; < 1 means DefaultBatchSize
}

// DefaultConfig reaches 0.955 to 0.984 test accuracy (mean 0.968) on 75/25
// splits of the digits data with split seeds 1..10, training in about 0.1 s.
func DefaultConfig() TrainConfig {
	return TrainConfig{LearningRate: 0.5, L2: 1e-4, Epochs: 100, Seed: 1, BatchSize: DefaultBatchSize}
}

// Sweep is the grid of the example's hyperparameter sweep: three learning
// rates (0.1, 0.5, 2) times two weight decays (1e-4, 1e-2), 100 epochs each,
// seed 1, batch 32. All of them train a usable model: 0.955 to 0.984 test
// accuracy on the split with seed 1, 0.92 to 0.98 over split seeds 1..10.
// The strong decay costs two to three points, so picking the best one is
// meaningful.
func Sweep() []TrainConfig {
	var cs []TrainConfig
	for _, lr := range []float64{0.1, 0.5, 2} {
		for _, l2 := range []float64{1e-4, 1e-2} {
			cs = append(cs, TrainConfig{LearningRate: lr, L2: l2, Epochs: 100, Seed: 1, BatchSize: DefaultBatchSize})
		}
	}
	return cs
}

// Model is a multinomial logistic (softmax) regression classifier.
// Weights[c] holds the Features weights of class c followed by its bias; the
// score of class c for image x is Weights[c][:Features]·x + Weights[c][Features].
type Model struct {
	Weights [][]float64
	Config  TrainConfig // how the model was trained; informational
}

// NewModel returns a model with all weights zero.
func NewModel() Model {
	w := make([][]float64, Classes)
	for c := range w {
		w[c] = make([]float64, Features+1)
	}
	return Model{Weights: w}
}

// Train fits a softmax regression to d by mini-batch gradient descent on the
// mean cross-entropy plus L2/2 times the squared weights (biases excluded).
// The step size falls linearly from cfg.LearningRate to zero over the run,
// which makes the final model insensitive to the noise of the last batches
// (with a constant rate, large rates with large L2 end far from the optimum).
// The weights start at zero and the rows are shuffled each epoch with a
// generator seeded by cfg.Seed, so the result depends only on d and cfg.
// An empty d gives the zero model. Rows must be well formed (as ReadCSV
// gives them): Train panics on an image without Features values.
func Train(d Dataset, cfg TrainConfig) Model {
	m := NewModel()
	m.Config = cfg
	n := d.Len()
	if n == 0 {
		return m
	}
	bs := cfg.BatchSize
	if bs < 1 {
		bs = DefaultBatchSize
	}
	bs = min(bs, n)
	r := newRNG(cfg.Seed)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	grad := NewModel().Weights
	p := make([]float64, Classes)
	steps := cfg.Epochs * ((n + bs - 1) / bs)
	t := 0
	for range cfg.Epochs {
		r.shuffle(order)
		for start := 0; start < n; start += bs {
			batch := order[start:min(start+bs, n)]
			for c := range grad {
				clear(grad[c])
			}
			for _, i := range batch {
				x := d.X[i]
				m.probabilities(x, p)
				p[d.Y[i]]--
				for c, pc := range p {
					g := grad[c]
					for j, v := range x {
						g[j] += pc * v
					}
					g[Features] += pc
				}
			}
			lr := cfg.LearningRate * float64(steps-t) / float64(steps)
			t++
			step := lr / float64(len(batch))
			decay := 1 - lr*cfg.L2
			for c, w := range m.Weights {
				g := grad[c]
				for j := range Features {
					w[j] = w[j]*decay - step*g[j]
				}
				w[Features] -= step * g[Features]
			}
		}
	}
	return m
}

// scores writes the class scores of x into s.
func (m Model) scores(x []float64, s []float64) {
	if len(x) != Features {
		panic(fmt.Sprintf("digits: image has %d features, want %d", len(x), Features))
	}
	for c, w := range m.Weights {
		z := w[Features]
		for j, v := range x {
			z += w[j] * v
		}
		s[c] = z
	}
}

// probabilities writes the softmax class probabilities of x into p.
func (m Model) probabilities(x []float64, p []float64) {
	m.scores(x, p)
	mx := p[0]
	for _, z := range p[1:] {
		mx = max(mx, z)
	}
	sum := 0.0
	for c, z := range p {
		p[c] = math.Exp(z - mx)
		sum += p[c]
	}
	for c := range p {
		p[c] /= sum
	}
}

// Probabilities returns the model's probability of each class for image x.
func (m Model) Probabilities(x []float64) []float64 {
	p := make([]float64, Classes)
	m.probabilities(x, p)
	return p
}

// Predict returns the most likely class of image x (the lowest on a tie).
// It panics if x does not have Features values.
func (m Model) Predict(x []float64) int {
	var s [Classes]float64
	m.scores(x, s[:])
	best := 0
	for c := 1; c < Classes; c++ {
		if s[c] > s[best] {
			best = c
		}
	}
	return best
}

// PredictBatch returns Predict of each image.
func (m Model) PredictBatch(xs [][]float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = m.Predict(x)
	}
	return out
}

// Accuracy is the fraction of rows of d that m classifies correctly; 0 for
// an empty d.
func Accuracy(m Model, d Dataset) float64 {
	if d.Len() == 0 {
		return 0
	}
	right := 0
	for i, x := range d.X {
		if m.Predict(x) == d.Y[i] {
			right++
		}
	}
	return float64(right) / float64(d.Len())
}

// modelFile is the JSON form of a Model.
type modelFile struct {
	Format   string      `json:"format"`
	Classes  int         `json:"classes"`
	Features int         `json:"features"`
	Config   TrainConfig `json:"config"`
	Weights  [][]float64 `json:"weights"`
}

// Save writes m as one line of JSON. Weights keep full float64 precision,
// so LoadModel gives back an identical model.
func (m Model) Save(w io.Writer) error {
	if err := m.check(); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(modelFile{
		Format: ModelFormat, Classes: Classes, Features: Features,
		Config: m.Config, Weights: m.Weights,
	})
}

// LoadModel reads a model written by Save and checks its shape.
func LoadModel(r io.Reader) (Model, error) {
	var f modelFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Model{}, fmt.Errorf("digits: model: %w", err)
	}
	if f.Format != ModelFormat {
		return Model{}, fmt.Errorf("digits: model: format %q, want %q", f.Format, ModelFormat)
	}
	if f.Classes != Classes || f.Features != Features {
		return Model{}, fmt.Errorf("digits: model: %d classes x %d features, want %d x %d", f.Classes, f.Features, Classes, Features)
	}
	m := Model{Weights: f.Weights, Config: f.Config}
	if err := m.check(); err != nil {
		return Model{}, err
	}
	return m, nil
}

func (m Model) check() error {
	if len(m.Weights) != Classes {
		return fmt.Errorf("digits: model: %d weight rows, want %d", len(m.Weights), Classes)
	}
	for c, w := range m.Weights {
		if len(w) != Features+1 {
			return fmt.Errorf("digits: model: class %d has %d weights, want %d", c, len(w), Features+1)
		}
		for _, v := range w {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("digits: model: class %d has a non-finite weight", c)
			}
		}
	}
	return nil
}
