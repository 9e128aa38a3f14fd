package transfer

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCheckToken(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	good := Token("secret", "data.bin", now.Add(time.Minute))
	exp, sig, _ := strings.Cut(good, ".")
	flipped := exp + "." + strings.Repeat("0", len(sig))
	tests := []struct {
		name   string
		secret string
		entry  string
		token  string
		want   error // nil: accepted
	}{
		{name: "good", secret: "secret", entry: "data.bin", token: good},
		{name: "last second", secret: "secret", entry: "data.bin", token: Token("secret", "data.bin", now.Add(time.Second))},
		{name: "expires now", secret: "secret", entry: "data.bin", token: Token("secret", "data.bin", now), want: ErrExpiredToken},
		{name: "expired", secret: "secret", entry: "data.bin", token: Token("secret", "data.bin", now.Add(-time.Hour)), want: ErrExpiredToken},
		{name: "other name", secret: "secret", entry: "other.bin", token: good, want: ErrBadToken},
		{name: "other secret", secret: "SECRET", entry: "data.bin", token: good, want: ErrBadToken},
		{name: "no secret", secret: "", entry: "data.bin", token: Token("", "data.bin", now.Add(time.Minute)), want: ErrBadToken},
		{name: "missing", secret: "secret", entry: "data.bin", token: "", want: ErrBadToken},
		{name: "no dot", secret: "secret", entry: "data.bin", token: exp + sig, want: ErrBadToken},
		{name: "wrong signature", secret: "secret", entry: "data.bin", token: flipped, want: ErrBadToken},
		{name: "extended expiry", secret: "secret", entry: "data.bin", token: strconv.Itoa(int(now.Unix())+3600) + "." + sig, want: ErrBadToken},
		{name: "padded expiry", secret: "secret", entry: "data.bin", token: "0" + good, want: ErrBadToken},
		{name: "plus expiry", secret: "secret", entry: "data.bin", token: "+" + good, want: ErrBadToken},
		{name: "short signature", secret: "secret", entry: "data.bin", token: good[:len(good)-2], want: ErrBadToken},
		{name: "upper-case hex", secret: "secret", entry: "data.bin", token: exp + "." + strings.ToUpper(sig), want: ErrBadToken},
		{name: "not hex", secret: "secret", entry: "data.bin", token: exp + "." + strings.Repeat("zz", 32), want: ErrBadToken},
		{name: "huge", secret: "secret", entry: "data.bin", token: good + strings.Repeat("0", 200), want: ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckToken(tt.secret, tt.entry, tt.token, now)
			if tt.want == nil {
				if err != nil {
					t.Errorf("CheckToken = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("CheckToken = %v; want an error wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.entry) {
				t.Errorf("CheckToken = %q; want the name %s in it", err, tt.entry)
			}
		})
	}
}

func TestTokenFormat(t *testing.T) {
	got := Token("k", "n", time.Unix(42, 0))
	// HMAC-SHA256(key "k", "n|42"), from Python: hmac.new(b"k", b"n|42", "sha256").hexdigest()
	want := "42.e9a3062b8c111a5b612db5803f7b902bd9bdf9b5e0b7b615a24bfa7617b7956f"
	if got != want {
		t.Errorf("Token(k, n, 42) = %q; want %q", got, want)
	}
}

func FuzzCheckToken(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add("name", Token("secret", "name", now.Add(time.Minute)))
	f.Add("name", Token("secret", "name", now.Add(-time.Minute)))
	f.Add("x", "1.2")
	f.Add("x", ".")
	f.Add("x", "-1."+strings.Repeat("ab", 32))
	f.Fuzz(func(t *testing.T, name, token string) {
		err := CheckToken("secret", name, token, now)
		if err == nil {
			exp, _, _ := strings.Cut(token, ".")
			sec, perr := strconv.ParseInt(exp, 10, 64)
			if perr != nil || token != Token("secret", name, time.Unix(sec, 0)) || !now.Before(time.Unix(sec, 0)) {
				t.Errorf("CheckToken(%q, %q) = nil for a token Token did not make or that expired", name, token)
			}
			return
		}
		if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpiredToken) {
			t.Errorf("CheckToken(%q, %q) = %v; want ErrBadToken or ErrExpiredToken", name, token, err)
		}
	})
}
