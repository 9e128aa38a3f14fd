package web

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
)

// fake is a Source with a snapshot whose version moves on each read.
type fake struct {
	version atomic.Uint64
	tasks   []*manager.TaskInfo
}

func (f *fake) Snapshot(context.Context) (*manager.Snapshot, error) {
	v := f.version.Add(1)
	return &manager.Snapshot{Version: v, Built: time.Unix(0, 0), Status: &pb.StatusResponse{
		Tasks: &pb.TaskCounts{Running: 3, Finished: v},
		Workers: []*pb.WorkerStatus{{Name: "w<1>", Total: &pb.Resources{Cores: 4, MemoryMb: 1024},
			Free: &pb.Resources{Cores: 1, MemoryMb: 512}}},
		Libraries: []*pb.LibraryStatus{{Name: "math", Instances: []*pb.InstanceStatus{{Ready: true, Busy: 1, Slots: 2}},
			InstancesStarted: 2, ColdStartMsMean: 1500, ColdStartMsLatest: 1200}},
	}}, nil
}

func (f *fake) Task(id uint64) *manager.TaskInfo {
	for _, t := range f.tasks {
		if t.ID == id {
			return t
		}
	}
	return nil
}

func (f *fake) Producer(name string) *manager.TaskInfo {
	for _, t := range f.tasks {
		for _, o := range t.Spec.GetOutputs() {
			if o.GetName() == name {
				return t
			}
		}
	}
	return nil
}

func (f *fake) Tasks(state pb.TaskState, skip, n int) manager.TaskPage {
	p := manager.TaskPage{Total: len(f.tasks)}
	for i := len(f.tasks) - 1 - skip; i >= 0 && len(p.Tasks) < n; i-- {
		p.Tasks = append(p.Tasks, f.tasks[i])
	}
	return p
}

func serve(t *testing.T, src Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- New(src, "s3cret").Run(ctx, ln) }() // exits when ctx ends
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return resp.StatusCode, b.String()
}

// Nothing but the sign-in page is readable without the secret; the
// secret gives an HttpOnly, SameSite=Strict cookie that opens the pages.
func TestSignIn(t *testing.T) {
	src := &fake{}
	for i := 1; i <= 250; i++ {
		src.tasks = append(src.tasks, &manager.TaskInfo{ID: uint64(i), Spec: &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: "echo <b>"},
			State: pb.TaskState_TASK_STATE_DONE, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Stdout: []byte("hello <script>")}})
	}
	base := serve(t, src)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/events", "/tasks", "/tasks/1"} {
		if code, _ := get(t, noRedirect, base+path); code != http.StatusUnauthorized {
			t.Errorf("GET %s without signing in: HTTP %d, want 401", path, code)
		}
	}
	if code, body := get(t, noRedirect, base+"/login"); code != 200 || !strings.Contains(body, `name="secret"`) {
		t.Errorf("GET /login: HTTP %d, want 200 with the form", code)
	}
	resp, err := noRedirect.PostForm(base+"/login", url.Values{"secret": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("sign in with a wrong secret: HTTP %d, cookies %v; want 401 and none", resp.StatusCode, resp.Cookies())
	}
	resp, err = noRedirect.PostForm(base+"/login", url.Values{"secret": {"s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Name != cookieName {
		t.Fatalf("sign in: HTTP %d, cookies %+v; want 303 and one HttpOnly SameSite=Strict %s", resp.StatusCode, cs, cookieName)
	}

	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base)
	jar.SetCookies(u, cs)
	c := &http.Client{Jar: jar}
	code, body := get(t, c, base+"/")
	for _, want := range []string{`id="q-task-running">3<`, `w&lt;1&gt;`, `3 / 4`, `512.0 MiB / 1.0 GiB`, `1 / 1`, `1 / 2`, `<td class="cold">1500 ms / 1200 ms</td>`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /: HTTP %d, want 200 with %q in:\n%s", code, want, body)
		}
	}
	code, body = get(t, c, base+"/tasks?page=2")
	if code != 200 || !strings.Contains(body, `href="/tasks/150"`) || strings.Contains(body, `href="/tasks/151"`) || !strings.Contains(body, "page 2 of 3") {
		t.Errorf("GET /tasks?page=2: HTTP %d, want tasks 150 down to 51, page 2 of 3:\n%s", code, body)
	}
	code, body = get(t, c, base+"/tasks/7")
	if code != 200 || !strings.Contains(body, "echo &lt;b&gt;") || !strings.Contains(body, "hello &lt;script&gt;") {
		t.Errorf("GET /tasks/7: HTTP %d, want its escaped command and stdout:\n%s", code, body)
	}
	if code, _ := get(t, c, base+"/tasks/999"); code != 404 {
		t.Errorf("GET /tasks/999: HTTP %d, want 404", code)
	}

	// The event stream sends the overview as the snapshot changes.
	req, _ := http.NewRequest("GET", base+"/events", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err = c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var events int
	for sc.Scan() && events < 2 {
		if sc.Text() == "event: overview" {
			events++
		}
	}
	if events < 2 {
		t.Errorf("the event stream sent %d overviews before it ended (%v), want 2", events, sc.Err())
	}

	// Signing out ends the session.
	resp, err = c.Post(base+"/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	old := &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}
	jar.SetCookies(u, cs)
	if code, _ := get(t, old, base+"/"); code != http.StatusUnauthorized {
		t.Errorf("GET / with the cookie of an ended session: HTTP %d, want 401", code)
	}
}
