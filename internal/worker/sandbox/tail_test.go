package sandbox

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name          string
		limit         int
		writes        []string
		want          string
		wantTruncated bool
	}{
		{name: "nothing written", limit: 4, want: ""},
		{name: "fits", limit: 4, writes: []string{"ab", "c"}, want: "abc"},
		{name: "exactly full", limit: 4, writes: []string{"ab", "cd"}, want: "abcd"},
		{name: "overflow by one write", limit: 4, writes: []string{"abc", "de"}, want: "bcde", wantTruncated: true},
		{name: "single write larger than limit", limit: 4, writes: []string{"abcdefg"}, want: "defg", wantTruncated: true},
		{name: "wraps many times", limit: 3, writes: []string{"ab", "cd", "ef", "g", "hij", "k"}, want: "ijk", wantTruncated: true},
		{name: "large write after ring", limit: 3, writes: []string{"abcd", "efghij"}, want: "hij", wantTruncated: true},
		{name: "small writes after large", limit: 3, writes: []string{"abcdef", "g", "h"}, want: "fgh", wantTruncated: true},
		{name: "empty writes", limit: 3, writes: []string{"", "ab", ""}, want: "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.limit)
			var all []byte
			for _, w := range tt.writes {
				n, err := b.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
				all = append(all, w...)
			}
			if got := b.Bytes(); !bytes.Equal(got, []byte(tt.want)) {
				t.Errorf("Bytes() = %q; want %q", got, tt.want)
			}
			if got := b.Truncated(); got != tt.wantTruncated {
				t.Errorf("Truncated() = %v; want %v", got, tt.wantTruncated)
			}
			// Whatever the write pattern, the buffer holds the tail of the
			// concatenation.
			tail := all[max(0, len(all)-tt.limit):]
			if got := b.Bytes(); !bytes.Equal(got, tail) {
				t.Errorf("Bytes() = %q; want the tail %q", got, tail)
			}
		})
	}
}

func TestTailBufferReadFrom(t *testing.T) {
	long := strings.Repeat("0123456789", 300)
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{name: "whole", wrap: func(r io.Reader) io.Reader { return r }},
		{name: "one byte", wrap: iotest.OneByteReader},
		{name: "half", wrap: iotest.HalfReader},
	}
	tests := []struct {
		name   string
		limit  int
		before string // written with Write first
		input  string
	}{
		{name: "empty", limit: 8, input: ""},
		{name: "fits", limit: 8, input: "abc"},
		{name: "exactly full", limit: 8, input: "abcdefgh"},
		{name: "overflows", limit: 8, input: "abcdefghijk"},
		{name: "long input, small limit", limit: 7, input: long},
		{name: "long input, limit past the first growth", limit: 1000, input: long},
		{name: "after a Write", limit: 10, before: "xyz", input: long},
		{name: "after a Write that filled the ring", limit: 10, before: "abcdefghijklm", input: "nop"},
	}
	for _, rd := range readers {
		for _, tt := range tests {
			t.Run(rd.name+"/"+tt.name, func(t *testing.T) {
				b := newTailBuffer(tt.limit)
				b.Write([]byte(tt.before))
				n, err := b.ReadFrom(rd.wrap(strings.NewReader(tt.input)))
				if n != int64(len(tt.input)) || err != nil {
					t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, len(tt.input))
				}
				all := tt.before + tt.input
				want := all[max(0, len(all)-tt.limit):]
				if got := b.Bytes(); string(got) != want {
					t.Errorf("Bytes() = %q; want %q", got, want)
				}
				if got, want := b.Truncated(), len(all) > tt.limit; got != want {
					t.Errorf("Truncated() = %v; want %v", got, want)
				}
			})
		}
	}
}
