package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// journal.db: in format 1 the whole journal was this bbolt file (records
// keyed by Seq in bucket "records", a CRC-32C of key and data before each
// value; the version and the snapshot in bucket "meta"). Now it holds only
// the version, and its file lock is the lock on the state directory. Open
// converts a format 1 journal once: it reads its intact records and its
// snapshot, writes them as a snapshot file and one segment in a temporary
// directory, syncs, renames that to DirName, and only then sets the
// version to 2 and empties the old buckets. A crash before the rename
// leaves format 1 (converted again at the next Open); after it, DirName
// exists and stands, and the next Open finishes the marking.

var (
	bucketMeta    = []byte("meta")
	bucketRecords = []byte("records")
	keyVersion    = []byte("version")
	keySnapshot   = []byte("snapshot")
)

// ErrLocked says another process holds the state directory.
var ErrLocked = errors.New("journal: state directory in use by another manager")

// lockState opens journal.db in dir, which locks the state directory,
// checks its version, and converts a format 1 journal to segments.
func lockState(dir string, timeout time.Duration) (db *bolt.DB, converted bool, err error) {
	path := filepath.Join(dir, FileName)
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, false, fmt.Errorf("%w: %s is locked: stop the other manager, or give this one another --state directory", ErrLocked, path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("journal: open %s: %w", path, err)
	}
	found := uint64(0)
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		v := meta.Get(keyVersion)
		switch {
		case v == nil:
		case len(v) != 8:
			return fmt.Errorf("journal: %s: header is %d bytes, want 8: the file is not a trellis journal, or is damaged", path, len(v))
		default:
			found = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err == nil && found > Version {
		err = &VersionError{Path: path, Found: found}
	}
	segDir := filepath.Join(dir, DirName)
	if err == nil && found == 1 {
		if _, statErr := os.Stat(segDir); errors.Is(statErr, os.ErrNotExist) {
			err = convert(db, path, segDir)
			converted = err == nil
		}
	}
	if err == nil && found != Version {
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if tx.Bucket(bucketRecords) != nil {
				if err := tx.DeleteBucket(bucketRecords); err != nil {
					return err
				}
			}
			if err := meta.Delete(keySnapshot); err != nil {
				return err
			}
			return meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, Version))
		})
		if err != nil {
			err = fmt.Errorf("journal: %s: write the format: %w", path, err)
		}
	}
	if err != nil {
		db.Close()
		return nil, false, err
	}
	return db, converted, nil
}

// convert writes the intact records and the snapshot of the format 1
// journal in db as a journal directory segDir.
func convert(db *bolt.DB, path, segDir string) error {
	tmp := segDir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("journal: convert %s: %w", path, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("journal: convert %s: %w", path, err)
	}
	err := db.View(func(tx *bolt.Tx) error {
		upto := Seq(0)
		if v := tx.Bucket(bucketMeta).Get(keySnapshot); v != nil {
			snap, err := decodeSnapshot(v)
			if err != nil {
				return fmt.Errorf("the snapshot is damaged (%v), and the records it stands for are gone: "+
					"restore the state directory from a backup, or start with an empty --state directory", err)
			}
			if err := WriteFile(filepath.Join(tmp, snapshotName), v); err != nil {
				return err
			}
			upto = snap.Upto
		}
		b := segmentHeader(upto + 1)
		n := 0
		if recs := tx.Bucket(bucketRecords); recs != nil {
			c := recs.Cursor()
			want := upto + 1
			// The intact records after the snapshot; from the first
			// damaged one on, none (as format 1's Open dropped them).
			for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(want))); k != nil; k, v = c.Next() {
				data, why := decodeLegacy(k, v, want)
				if why != "" {
					break
				}
				b = appendFrame(b, want, data)
				want++
				n++
			}
		}
		if n > 0 {
			if err := WriteFile(filepath.Join(tmp, segmentName(upto+1)), b); err != nil {
				return err
			}
		}
		return syncDir(tmp)
	})
	if err == nil {
		err = os.Rename(tmp, segDir)
	}
	if err == nil {
		err = syncDir(filepath.Dir(segDir))
	}
	if err != nil {
		return fmt.Errorf("journal: convert %s (format 1) to %s: %w", path, segDir, err)
	}
	return nil
}

// decodeLegacy checks one format 1 record and returns its data, or why it
// is bad.
func decodeLegacy(k, v []byte, want Seq) ([]byte, string) {
	if len(k) != 8 {
		return nil, fmt.Sprintf("record %d: key is %d bytes, want 8", want, len(k))
	}
	if got := Seq(binary.BigEndian.Uint64(k)); got != want {
		return nil, fmt.Sprintf("record %d is missing (next is %d)", want, got)
	}
	if len(v) < 4 {
		return nil, fmt.Sprintf("record %d: torn (%d bytes, shorter than its checksum)", want, len(v))
	}
	if sum := crc32.Checksum(v[4:], castagnoli) ^ crc32.Checksum(k, castagnoli); sum != binary.BigEndian.Uint32(v) {
		return nil, fmt.Sprintf("record %d: checksum mismatch (torn or corrupt)", want)
	}
	return v[4:], ""
}
