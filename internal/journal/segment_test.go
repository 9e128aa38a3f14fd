package journal

import (
	"bytes"
	"testing"
)

// FuzzDecodeSegment hands arbitrary bytes to the segment decoder: it
// never panics, its intact part is within the input, and every record it
// yields is framed with a checksum that matches (re-encoding it gives the
// same bytes, at the place it was read from).
func FuzzDecodeSegment(f *testing.F) {
	good := segmentHeader(7)
	good = appendFrame(good, 7, []byte("seven"))
	good = appendFrame(good, 8, nil)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(segmentHeader(7))
	f.Add([]byte("trellisJ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		off := segHeaderSize
		intact, why, err := decodeSegment("fuzz", b, 7, func(r Record) error {
			frame := appendFrame(nil, r.Seq, r.Data)
			if off+len(frame) > len(b) || !bytes.Equal(b[off:off+len(frame)], frame) {
				t.Fatalf("record %d (%q) is not the frame at offset %d", r.Seq, r.Data, off)
			}
			off += len(frame)
			return nil
		})
		if err != nil {
			return // a VersionError: the header names a newer format
		}
		if intact > len(b) || why == "" && intact != len(b) {
			t.Fatalf("intact %d of %d bytes, why %q", intact, len(b), why)
		}
	})
}
