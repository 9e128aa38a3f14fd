package libhost

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	for _, env := range []string{"", "GOMAXPROCS=1"} {
		spec := helperSpec(t, "ok")
		if env != "" {
			spec.Env = append(spec.Env, env)
		}
		h := start(t, spec)
		for _, to := range []time.Duration{0, time.Minute} {
			lat := make([]time.Duration, 3000)
			for i := range lat {
				s := time.Now()
				if _, err := h.Call(context.Background(), "noop", nil, to); err != nil {
					t.Fatal(err)
				}
				lat[i] = time.Since(s)
			}
			slices.Sort(lat)
			t.Logf("env %q timeout %v: p50 %v p99 %v", env, to, lat[1500], lat[2970])
		}
	}
	_ = os.Args
}
