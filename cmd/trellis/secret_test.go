package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecret(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string // the secret, or "" when an error is wanted
		wantErr string
	}{
		{"one line", "s3cret\n", "s3cret", ""},
		{"surrounding space", "  s3cret  \n\n", "s3cret", ""},
		{"empty", "\n", "", "is empty"},
		{"two lines", "s3cret\nmore\n", "", "holds 2 lines"},
		{"a tab inside", "s3\tcret", "", `holds a control character ('\t') at byte 2`},
		{"a carriage return", "ab\rc", "", `holds a control character ('\r') at byte 2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readSecret(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("readSecret(%q) = %q, %v; want an error naming the file and %q", tc.content, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readSecret(%q) = %q, %v; want %q", tc.content, got, err, tc.want)
			}
		})
	}
}
