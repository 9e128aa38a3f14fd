package sandbox

import (
	"errors"
	"fmt"
)

// ErrMissingOutput is wrapped when an output file does not exist.
var ErrMissingOutput = errors.New("sandbox: output was not created")

// ErrNotRegular is wrapped when an output exists but is not a regular file.
var ErrNotRegular = errors.New("sandbox: output is not a regular file")

func missingOutput(name string) error {
	return &refusal{msg: fmt.Sprintf("sandbox: output %q was not created", name), err: ErrMissingOutput}
}

func notRegular(name string) error {
	return &refusal{msg: fmt.Sprintf("sandbox: output %q is not a regular file", name), err: ErrNotRegular}
}
