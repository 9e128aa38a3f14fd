//go:build !linux

package sandbox

import (
	"errors"
	"time"
)

// pollSet exists on Linux only (epoll): the sampler waits on its timer.
type pollSet struct{}

func newPollSet() (*pollSet, error)                     { return nil, errors.ErrUnsupported }
func (e *pollSet) add(int) error                        { return errors.ErrUnsupported }
func (e *pollSet) del(int)                              {}
func (e *pollSet) poke()                                {}
func (e *pollSet) wait(time.Time, []int) ([]int, error) { return nil, errors.ErrUnsupported }
