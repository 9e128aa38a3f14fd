package journal_test

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
)

// TestFormat1Converted: a state directory of format 1 (journal.db from
// before segments) opens: its snapshot and records are converted to
// segments once, journal.db then names format 2 and holds no records, and
// the journal goes on from the last record.
func TestFormat1Converted(t *testing.T) {
	for _, tt := range []struct {
		name       string
		upto       uint64
		snap, recs [][]byte
	}{
		{name: "records", recs: records(4)},
		{name: "snapshot and records", upto: 10, snap: [][]byte{[]byte("s1"), []byte("s2")}, recs: records(3)},
		{name: "snapshot only", upto: 10, snap: [][]byte{[]byte("s1")}},
		{name: "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			journaltest.WriteFormat1(t, dir, tt.upto, tt.snap, tt.recs)
			want := append(append([][]byte{}, tt.snap...), tt.recs...)
			j, err := journal.Open(dir, journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rec := j.Recovered()
			if !rec.Converted || rec.Kept != len(tt.recs) || rec.Snapshot != journal.Seq(tt.upto) {
				t.Errorf("Recovered() = %+v, want converted, %d records after a snapshot up to %d", rec, len(tt.recs), tt.upto)
			}
			if got, want := j.Durable(), journal.Seq(tt.upto)+journal.Seq(len(tt.recs)); got != want {
				t.Errorf("Durable() = %d, want %d", got, want)
			}
			j.Append([]byte("new"))
			flush(t, j)
			j.Close()
			want = append(want, []byte("new"))
			if diff := cmp.Diff(want, journaltest.Read(t, dir)); diff != "" {
				t.Errorf("replay after conversion (-want +got):\n%s", diff)
			}
			raw(t, dir, func(tx *bolt.Tx) error {
				if v := tx.Bucket([]byte("meta")).Get([]byte("version")); binary.BigEndian.Uint64(v) != journal.Version {
					t.Errorf("journal.db names format %d after the conversion, want %d", binary.BigEndian.Uint64(v), journal.Version)
				}
				if tx.Bucket([]byte("records")) != nil || tx.Bucket([]byte("meta")).Get([]byte("snapshot")) != nil {
					t.Errorf("journal.db still holds format 1 records or snapshot after the conversion")
				}
				return nil
			})
			j, err = journal.Open(dir, journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if j.Recovered().Converted {
				t.Errorf("converted again at the second Open")
			}
			j.Close()
		})
	}
}

// TestFormat1MarkingCutShort: a conversion whose segments were written
// and renamed into place, but whose marking of journal.db was cut short
// (it still says format 1), is not converted again: the segments stand.
func TestFormat1MarkingCutShort(t *testing.T) {
	dir := t.TempDir()
	journaltest.WriteFormat1(t, dir, 0, nil, records(2))
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	j.Append([]byte("new"))
	flush(t, j)
	j.Close()
	journaltest.WriteFormat1(t, dir, 0, nil, records(2)) // format 1 again, and its records
	want := append(records(2), []byte("new"))
	if diff := cmp.Diff(want, journaltest.Read(t, dir)); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
}
