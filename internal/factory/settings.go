package factory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Settings are what a factory's configuration file may change while it
// runs.
type Settings struct {
	Limits
	StartTimeout time.Duration
}

// file is the configuration file: the flags' names and meanings; a key
// left out keeps the flag's value.
type file struct {
	Min          *int           `yaml:"min"`
	Max          *int           `yaml:"max"`
	PerCycle     *int           `yaml:"per-cycle"`
	Cores        *float64       `yaml:"cores"`
	Memory       *int64         `yaml:"memory"`
	Disk         *int64         `yaml:"disk"`
	GPUs         *int           `yaml:"gpus"`
	StartTimeout *time.Duration `yaml:"start-timeout"`
}

// ParseSettings reads a configuration file over base (the flags): an
// unknown key, a value of the wrong type or settings out of bounds are
// errors that name them.
func ParseSettings(data []byte, base Settings) (Settings, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Settings{}, err
	}
	s := base
	set := func(p *int, v *int) {
		if v != nil {
			*p = *v
		}
	}
	set(&s.Min, f.Min)
	set(&s.Max, f.Max)
	set(&s.PerCycle, f.PerCycle)
	set(&s.Worker.GPUs, f.GPUs)
	if f.Cores != nil {
		s.Worker.Cores = *f.Cores
	}
	if f.Memory != nil {
		s.Worker.MemoryMB = *f.Memory
	}
	if f.Disk != nil {
		s.Worker.DiskMB = *f.Disk
	}
	if f.StartTimeout != nil {
		s.StartTimeout = *f.StartTimeout
	}
	return s, s.Check()
}

// Check tells whether the settings can run a factory.
func (s Settings) Check() error {
	switch {
	case s.Max <= 0 || s.Max < s.Min:
		return fmt.Errorf("max %d must be positive and at least min %d", s.Max, s.Min)
	case s.Min < 0 || s.PerCycle < 0:
		return fmt.Errorf("min %d and per-cycle %d must not be negative", s.Min, s.PerCycle)
	case s.Worker.Cores <= 0:
		return fmt.Errorf("cores %g: give the cores of each worker", s.Worker.Cores)
	case s.Worker.MemoryMB < 0 || s.Worker.DiskMB < 0 || s.Worker.GPUs < 0 || s.StartTimeout < 0:
		return fmt.Errorf("memory %d, disk %d, gpus %d and start-timeout %s must not be negative", s.Worker.MemoryMB, s.Worker.DiskMB, s.Worker.GPUs, s.StartTimeout)
	}
	return nil
}

// SettingsFile returns a Config.Reload that reads path over base when its
// size or modification time changed since the last read, and nil
// settings when they did not. The first call reads it.
func SettingsFile(path string, base Settings) func() (*Settings, error) {
	var size int64 = -1
	var mtime time.Time
	return func() (*Settings, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if fi.Size() == size && fi.ModTime().Equal(mtime) {
			return nil, nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		s, err := ParseSettings(data, base)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		size, mtime = fi.Size(), fi.ModTime()
		return &s, nil
	}
}
