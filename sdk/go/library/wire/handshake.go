package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Handshake constants.
const (
	// Version is the protocol version this package speaks.
	Version = 1
	// HandshakePrefix starts the handshake line.
	HandshakePrefix = "TRELLIS-LIBRARY"
	// MaxHandshake is the longest handshake line, "\n" included.
	MaxHandshake = 64 << 10
)

// The environment variables a worker sets for a library.
const (
	EnvProtocol = "TRELLIS_LIBRARY_PROTOCOL"
	EnvName     = "TRELLIS_LIBRARY_NAME"
	EnvSlots    = "TRELLIS_LIBRARY_SLOTS"
	EnvMode     = "TRELLIS_LIBRARY_MODE"
)

// ErrHandshake is matched (with errors.Is) by every error about a malformed
// handshake line, including one of another protocol version.
var ErrHandshake = errors.New("wire: bad handshake")

func badHandshake(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrHandshake, fmt.Sprintf(format, args...))
}

// Handshake is what a library announces once it is ready.
type Handshake struct {
	// Version is the protocol version; ParseHandshake accepts only Version.
	Version int
	// Name is the library's own name, informational.
	Name string
	// Functions are the names of the functions it serves, in its order.
	Functions []string
}

// ValidFunctionName reports whether s is a function name the protocol
// allows: one or more of A-Z a-z 0-9 _ . -.
func ValidFunctionName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidLibraryName reports whether s can be a library name in a handshake:
// non-empty valid UTF-8 without '|' or control characters.
func ValidLibraryName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '|' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// FormatHandshake returns the handshake line for h, "\n" included. It
// refuses a name or function name that the protocol does not allow, a
// duplicate function, and a line over MaxHandshake bytes.
func FormatHandshake(h Handshake) (string, error) {
	if err := h.check(); err != nil {
		return "", err
	}
	line := HandshakePrefix + "|" + strconv.Itoa(h.Version) + "|" + h.Name + "|" + strings.Join(h.Functions, ",") + "\n"
	if len(line) > MaxHandshake {
		return "", badHandshake("line of %d bytes is over the limit of %d", len(line), MaxHandshake)
	}
	return line, nil
}

// check validates the fields of h.
func (h *Handshake) check() error {
	if h.Version != Version {
		return badHandshake("unsupported protocol version %d (want %d)", h.Version, Version)
	}
	if !ValidLibraryName(h.Name) {
		return badHandshake("invalid library name %q", h.Name)
	}
	seen := make(map[string]bool, len(h.Functions))
	for _, fn := range h.Functions {
		if !ValidFunctionName(fn) {
			return badHandshake("invalid function name %q", fn)
		}
		if seen[fn] {
			return badHandshake("duplicate function %q", fn)
		}
		seen[fn] = true
	}
	return nil
}

// ParseHandshake parses one handshake line, with or without its final "\n".
// An empty FUNCTIONS field means no functions.
func ParseHandshake(line []byte) (Handshake, error) {
	s := string(line)
	s = strings.TrimSuffix(s, "\n")
	if len(s)+1 > MaxHandshake {
		return Handshake{}, badHandshake("line of %d bytes is over the limit of %d", len(s)+1, MaxHandshake)
	}
	parts := strings.Split(s, "|")
	if len(parts) != 4 || parts[0] != HandshakePrefix {
		return Handshake{}, badHandshake("want %s|VERSION|NAME|FUNCTIONS, got %s", HandshakePrefix, quoteStart([]byte(s)))
	}
	v, err := strconv.Atoi(parts[1])
	if err != nil || strconv.Itoa(v) != parts[1] {
		return Handshake{}, badHandshake("version %s is not a number", quoteStart([]byte(parts[1])))
	}
	h := Handshake{Version: v, Name: parts[2]}
	if parts[3] != "" {
		h.Functions = strings.Split(parts[3], ",")
	}
	if err := h.check(); err != nil {
		return Handshake{}, err
	}
	return h, nil
}

// ReadHandshake reads and parses the handshake line from r, reading at most
// MaxHandshake bytes. It returns io.EOF when r ends before its first byte,
// and an error matching ErrHandshake for a malformed, overlong or
// unterminated line.
func ReadHandshake(r *bufio.Reader) (Handshake, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxHandshake {
			return Handshake{}, badHandshake("no end of line within %d bytes", MaxHandshake)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return ParseHandshake(line)
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) == 0:
			return Handshake{}, io.EOF
		case err == io.EOF:
			return Handshake{}, badHandshake("output ends inside the line %s", quoteStart(line))
		default:
			return Handshake{}, err
		}
	}
}
