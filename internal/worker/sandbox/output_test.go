package sandbox

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestOpenOutput(t *testing.T) {
	root := makeTree(t)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{name: "regular file", in: "out.txt", want: "hello"},
		{name: "nested regular file", in: "sub/out.txt", want: "nested!"},
		{name: "dot elements", in: "./sub//out.txt", want: "nested!"},
		{name: "missing", in: "missing", wantErr: ErrMissingOutput},
		{name: "missing directory", in: "nodir/out.txt", wantErr: ErrMissingOutput},
		{name: "below a regular file", in: "out.txt/x", wantErr: ErrMissingOutput},
		{name: "directory", in: "sub", wantErr: ErrNotRegular},
		{name: "fifo", in: "fifo", wantErr: ErrNotRegular},
		{name: "link to a file inside", in: "link", wantErr: ErrEscape},
		{name: "link to a file outside", in: "secretlink", wantErr: ErrEscape},
		{name: "through a link to a directory", in: "linkdir/out.txt", wantErr: ErrEscape},
		{name: "through a link out", in: "linkout/secret", wantErr: ErrEscape},
		{name: "dangling link", in: "dangling", wantErr: ErrEscape},
		{name: "nested link", in: "sub/uplink", wantErr: ErrEscape},
		{name: "parent", in: "../out.txt", wantErr: ErrEscape},
		{name: "absolute", in: "/etc/passwd", wantErr: ErrEscape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, size, err := OpenOutput(root, tt.in)
			if tt.wantErr != nil {
				if f != nil {
					f.Close()
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("OpenOutput(%q) error = %v; want one wrapping %v", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
					t.Errorf("OpenOutput(%q) error %q; want the name quoted", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenOutput(%q) error: %v", tt.in, err)
			}
			defer f.Close()
			if size != int64(len(tt.want)) {
				t.Errorf("OpenOutput(%q) size = %d; want %d", tt.in, size, len(tt.want))
			}
			got, err := io.ReadAll(f)
			if err != nil || string(got) != tt.want {
				t.Errorf("read %q = %q, %v; want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestOpenOutputMessage(t *testing.T) {
	_, _, err := OpenOutput(t.TempDir(), "x")
	want := `sandbox: output "x" was not created`
	if err == nil || err.Error() != want {
		t.Errorf("OpenOutput(missing x) error = %v; want %s", err, want)
	}
}

func TestOpenOutputMissingRoot(t *testing.T) {
	_, _, err := OpenOutput(t.TempDir()+"/gone", "x")
	if err == nil || errors.Is(err, ErrMissingOutput) {
		t.Errorf("OpenOutput(missing root) error = %v; want a non-nil error about the sandbox", err)
	}
}
