package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
)

// many is a Source with n workers and some file figures.
type many struct {
	fake
	n int
}

func (m *many) Snapshot(context.Context) (*manager.Snapshot, error) {
	st := &pb.StatusResponse{BytesFromPeers: 3 << 20, TasksRecreated: 4, FilesLost: 1, BytesPruned: 5 << 20, TasksHandedBack: 2}
	for i := 1; i <= m.n; i++ {
		st.Workers = append(st.Workers, &pb.WorkerStatus{Name: fmt.Sprintf("w%03d", i), Total: &pb.Resources{Cores: 2},
			Free: &pb.Resources{Cores: 1}, TasksDone: 1, CacheBytes: 1 << 20, PeakCacheBytes: 2 << 20})
	}
	return &manager.Snapshot{Version: 1, Built: time.Unix(0, 0), Status: st}, nil
}

// With many workers the overview shows the first 50 and a row of totals,
// and /workers and /files show them all, a page at a time.
func TestWorkerPages(t *testing.T) {
	base := serve(t, &many{n: 120})
	c := signedIn(t, base)
	code, body := get(t, c, base+"/")
	for _, want := range []string{`id="workers-count">120<`, "w050", "The first 50 of 120 workers", `<tr class="totals"><th colspan="2">all workers</th>
<td class="cores">120 / 240</td>`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /: HTTP %d, want %q in it", code, want)
		}
	}
	if strings.Contains(body, "w051") {
		t.Errorf("GET /: shows worker w051, want the first 50 only")
	}
	for _, c2 := range []struct {
		path      string
		has, lacs []string
	}{
		{"/workers?page=2", []string{"101 to 120 here", "page 2 of 2", `data-name="w101"`, `data-name="w120"`, `id="prev"`}, []string{`data-name="w100"`, `id="next"`}},
		{"/workers", []string{"1 to 100 here", `data-name="w100"`, `id="next"`}, []string{`data-name="w101"`}},
		{"/files", []string{"3.0 MiB", `id="f-recreated">4<`, `id="f-lost">1<`, `id="f-pruned">5.0 MiB<`, `id="f-handed-back">2<`, "<td>w100</td><td>1.0 MiB</td>"}, []string{"<td>w101</td>"}},
		{"/files?page=2", []string{"<td>w120</td>"}, []string{"<td>w100</td>"}},
	} {
		code, body := get(t, c, base+c2.path)
		for _, want := range c2.has {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("GET %s: HTTP %d, want %q in it", c2.path, code, want)
			}
		}
		for _, not := range c2.lacs {
			if strings.Contains(body, not) {
				t.Errorf("GET %s: has %q, want it not", c2.path, not)
			}
		}
	}
	if code, _ := get(t, c, base+"/workers?page=x"); code != http.StatusBadRequest {
		t.Errorf("GET /workers?page=x: HTTP %d, want 400", code)
	}
}

// The timeline draws the attempts that overlap the last minute, on their
// workers' rows, coloured by modality; an attempt still running reaches
// now.
func TestTimeline(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	tasks := []*manager.TaskInfo{
		{ID: 1, Spec: &pb.TaskSpec{Name: "old"}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "a", Started: ago(90), Ended: ago(70), Result: "success"}}},
		{ID: 2, Spec: &pb.TaskSpec{Name: "t"}, Attempts: []manager.AttemptInfo{
			{Attempt: 1, Worker: "a", Started: ago(70), Ended: ago(30), Result: "worker lost"},
			{Attempt: 2, Worker: "b", Started: ago(30)}}},
		{ID: 3, Spec: &pb.TaskSpec{Name: "c", Call: &pb.CallSpec{Library: "l"}}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "gone", Started: ago(5), Ended: ago(4)}}},
		{ID: 4, Spec: &pb.TaskSpec{Name: "c2", Call: &pb.CallSpec{Library: "l"}}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "b", Started: ago(6), Ended: ago(3), Result: "success"}}},
		{ID: 8, Spec: &pb.TaskSpec{Name: "d"}, Dataflow: true, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "a", Started: ago(12), Ended: ago(9), Result: "success"}}},
	}
	got := newTimeline([]string{"a", "b"}, tasks, now)
	bar := func(x, w, y float64, fill, title, href string, running bool) timelineBar {
		return timelineBar{X: x, W: w, Y: y, H: rowHeight - 4, Fill: fill, Title: title, Href: href, Running: running, N: 1}
	}
	want := []timelineRow{
		{Name: "a", Y: 0, Bars: []timelineBar{bar(0, 500, 2, "#1f77b4", "t (task 2, attempt 1): worker lost", "/tasks/2", false),
			bar(800, 50, 2, "#17becf", "d (task 8, attempt 1): success", "/tasks/8", false)}},
		{Name: "b", Y: rowHeight, Bars: []timelineBar{
			bar(500, 500, rowHeight+2, "#1f77b4", "t (task 2, attempt 2): running", "/tasks/2", true),
			bar(900, 50, rowHeight+2, "#ff7f0e", "c2 (task 4, attempt 1): success", "/tasks/4", false)}},
	}
	opt := cmp.Options{cmp.Comparer(func(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }), cmpopts.IgnoreUnexported(timelineBar{})}
	if diff := cmp.Diff(want, got.Rows, opt); diff != "" {
		t.Errorf("newTimeline rows mismatch (-want +got):\n%s", diff)
	}
	// Back-to-back attempts of one colour on one worker are one bar.
	merged := newTimeline([]string{"a"}, []*manager.TaskInfo{
		{ID: 5, Spec: &pb.TaskSpec{Name: "x"}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "a", Started: ago(30), Ended: ago(24), Result: "success"}}},
		{ID: 6, Spec: &pb.TaskSpec{Name: "y"}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "a", Started: ago(24), Ended: ago(12), Result: "success"}}},
		{ID: 7, Spec: &pb.TaskSpec{Name: "z"}, Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "a", Started: ago(6), Ended: ago(3), Result: "success"}}},
	}, now)
	wantMerged := []timelineBar{
		{X: 500, W: 300, Y: 2, H: rowHeight - 4, Fill: "#1f77b4", Title: "2 attempts; the last: y (task 6, attempt 1): success", Href: "/tasks/6", N: 2},
		{X: 900, W: 50, Y: 2, H: rowHeight - 4, Fill: "#1f77b4", Title: "z (task 7, attempt 1): success", Href: "/tasks/7", N: 1},
	}
	if diff := cmp.Diff(wantMerged, merged.Rows[0].Bars, opt); diff != "" {
		t.Errorf("newTimeline of back-to-back attempts (-want +got):\n%s", diff)
	}
	svg := string(newTimeline([]string{"<a>"}, []*manager.TaskInfo{{ID: 9, Spec: &pb.TaskSpec{Name: "x<script>"},
		Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: "<a>", Started: ago(1)}}}}, now).SVG())
	for _, want := range []string{">&lt;a&gt;</text>", "<title>x&lt;script&gt; (task 9, attempt 1): running</title>", `href="/tasks/9"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("timeline SVG lacks %q:\n%s", want, svg)
		}
	}
	if got.Tasks != 4 || len(got.Ticks) != 7 || got.Ticks[0].Label != "-60s" || got.Ticks[6].Label != "-0s" {
		t.Errorf("newTimeline: %d attempts, ticks %+v; want 4 attempts and 7 ticks from -60s to -0s", got.Tasks, got.Ticks)
	}
}

// bearer adds the secret to each request.
type bearer struct{}

func (bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer s3cret")
	return http.DefaultTransport.RoundTrip(r)
}

// signedIn is a client that sends the secret.
func signedIn(t *testing.T, base string) *http.Client {
	t.Helper()
	return &http.Client{Transport: bearer{}}
}

// BenchmarkOverview renders the live overview of 2 and 500 workers with a
// timeline of 2,000 recent attempts, as the hub does once a second.
func BenchmarkOverview(b *testing.B) {
	for _, workers := range []int{2, 500} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchOverview(b, workers) })
	}
}

func benchOverview(b *testing.B, workers int) {
	s := New(&many{n: workers}, "s3cret")
	snap, _ := (&many{n: workers}).Snapshot(context.Background())
	snap.Built = time.Now()
	var recent []*manager.TaskInfo
	for i := range timelineTasks {
		recent = append(recent, &manager.TaskInfo{ID: uint64(i + 1), Spec: &pb.TaskSpec{Name: fmt.Sprintf("t%d", i)},
			Attempts: []manager.AttemptInfo{{Attempt: 1, Worker: fmt.Sprintf("w%03d", i%min(50, workers)+1),
				Started: snap.Built.Add(-time.Duration(i) * 20 * time.Millisecond), Ended: snap.Built.Add(-time.Duration(i) * 10 * time.Millisecond), Result: "success"}}})
	}
	var size int
	for b.Loop() {
		var buf strings.Builder
		if err := s.pages.ExecuteTemplate(&buf, "live", newOverview(snap, recent)); err != nil {
			b.Fatal(err)
		}
		size = buf.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// A task page says which task wrote each input, with a link.
func TestTaskInputsFrom(t *testing.T) {
	src := &fake{tasks: []*manager.TaskInfo{
		{ID: 1, Spec: &pb.TaskSpec{Name: "split", Outputs: []*pb.FileRef{{Name: "temp-part", Path: "part.txt"}}}},
		{ID: 2, Spec: &pb.TaskSpec{Name: "count", Inputs: []*pb.FileRef{{Name: "temp-part", Path: "in.txt"}, {Name: "sha256-abc", Path: "words.txt"}}}},
	}}
	base := serve(t, src)
	code, body := get(t, signedIn(t, base), base+"/tasks/2")
	for _, want := range []string{
		`<code>in.txt</code> ← temp-part, written by <a href="/tasks/1">task 1 (split)</a>`,
		`<code>words.txt</code> ← sha256-abc, not written by a task the dashboard holds`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /tasks/2: HTTP %d, want %q in:\n%s", code, want, body)
		}
	}
}
