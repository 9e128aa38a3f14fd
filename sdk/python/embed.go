// Package python embeds the Python library SDK, so that Go programs (the
// benchmarks, examples) can ship it to workers as an input file.
package python

import _ "embed"

// SDK is trellis_library.py.
//
//go:embed trellis_library.py
var SDK []byte
