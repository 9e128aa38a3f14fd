package trellis

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// namesFake is a fake manager that records the names of the files a
// library install reads and a submit's tasks write.
type namesFake struct {
	*fakeManager
	mu    sync.Mutex
	names []string // in order: the library's input, then the task's output
}

func (f *namesFake) InstallLibrary(_ context.Context, req *connect.Request[pb.InstallLibraryRequest]) (*connect.Response[pb.InstallLibraryResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range req.Msg.Library.Inputs {
		f.names = append(f.names, in.Name)
	}
	return connect.NewResponse(&pb.InstallLibraryResponse{}), nil
}

func (f *namesFake) Submit(ctx context.Context, req *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error) {
	f.mu.Lock()
	for _, t := range req.Msg.Tasks {
		for _, out := range t.Outputs {
			f.names = append(f.names, out.Name)
		}
	}
	f.mu.Unlock()
	return f.fakeManager.Submit(ctx, req)
}

// TestOutputsNamedInSession: in a session of WithSession, an output with a
// client path has the same name for every client process of the session
// (built afresh, as trellis run does), in a library's inputs as in the
// task that writes it; outside one, each client names it anew.
func TestOutputsNamedInSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.json")
	names := func(opts ...Option) []string {
		f := &namesFake{fakeManager: newFakeManager()}
		c := dialFakeRPC(t, f.fakeManager, f, opts...)
		out := Output(path) // made afresh for each client, as trellis run does
		lib := &Library{Name: "lib", Command: "serve", Inputs: []Mount{{File: out, Path: "m.json"}}}
		if err := c.Install(context.Background(), lib); err != nil {
			t.Fatal(err)
		}
		tk := NewTask("train").AddOutput(out, "m.json")
		if _, err := c.Submit(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]string(nil), f.names...)
	}
	first, second := names(WithSession("run-1")), names(WithSession("run-1"))
	if len(first) != 2 || first[0] != first[1] || first[0] != second[0] || second[0] != second[1] {
		t.Errorf("names in one session: first client %v, second %v; want one name throughout", first, second)
	}
	if other := names(WithSession("run-2")); other[0] == first[0] {
		t.Errorf("another session names the output %s too; want a name of its own", other[0])
	}
	if a, b := names(), names(); a[0] != a[1] || a[0] == b[0] {
		t.Errorf("names without WithSession: %v and %v; want one name per client, and two clients apart", a, b)
	}
}
