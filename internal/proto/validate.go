package proto

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	pb "trellis/internal/proto/trellisv1"
)

// Protocol is the version of the worker protocol; a worker whose Hello
// names another is refused. 2: library instances have IDs of their own,
// every input not inline is staged with Fetch, the welcome comes alone.
const Protocol = 2

// Limits on what one message may carry.
const (
	MaxMessageBytes = 16 << 20 // one encoded message
	// CompressMinBytes: smaller messages go uncompressed. Gzip of every
	// small message cost a fifth of the CPU on the call path, to save
	// bytes that are cheap on the networks trellis runs on.
	CompressMinBytes = 1 << 20
	MaxCommandBytes  = 64 << 10
	MaxFilesPerTask  = 10000
	MaxEnvPerTask    = 1000
	MaxTasksPerCall  = 100000
	MaxNameBytes     = 128
	MaxPathBytes     = 4096
	// MaxInlineBytes bounds a file carried inside a message instead of
	// being transferred on its own.
	MaxInlineBytes = 64 << 10
	// MaxInlinePerMessage bounds the inline files of one message together.
	MaxInlinePerMessage = 8 << 20
)

// WorkerHeader marks a worker's own GETs from the manager's store, so that
// bytes sent to workers are counted apart from clients' downloads.
const WorkerHeader = "X-Trellis-Worker"

// DirHeader marks an HTTP response whose body is a directory's tar stream.
const DirHeader = "X-Trellis-Dir"

// DirPrefix starts the cache name of a directory named by the digest of its
// tar stream, as content-named files start with "sha256-".
const DirPrefix = "dir-"

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// CheckCacheName checks a file's cache name: 1 to 128 bytes of letters,
// digits, '.', '_' and '-', not starting with '.'.
func CheckCacheName(name string) error {
	if name == "" || len(name) > MaxNameBytes || name[0] == '.' {
		return invalid("cache name %q: want 1 to %d bytes, not starting with '.'", name, MaxNameBytes)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("cache name %q: byte %q not allowed (letters, digits, '.', '_', '-')", name, c)
		}
	}
	return nil
}

// CheckSandboxPath checks, without touching any disk, that p names a place
// inside a sandbox: relative, no ".." element, no NUL, not empty.
func CheckSandboxPath(p string) error {
	switch {
	case p == "" || len(p) > MaxPathBytes:
		return invalid("sandbox path %q: want 1 to %d bytes", p, MaxPathBytes)
	case strings.IndexByte(p, 0) >= 0:
		return invalid("sandbox path %q contains a NUL byte", p)
	case path.IsAbs(p):
		return invalid("sandbox path %q escapes the sandbox: it is absolute", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return invalid("sandbox path %q escapes the sandbox: it has a \"..\" element", p)
		}
	}
	if c := path.Clean(p); c == "." {
		return invalid("sandbox path %q names the sandbox itself", p)
	}
	return nil
}

// CheckResources checks that r is non-negative and finite.
func CheckResources(r *pb.Resources) error {
	if r == nil {
		return nil
	}
	if math.IsNaN(r.Cores) || math.IsInf(r.Cores, 0) || r.Cores < 0 || r.Cores > 1e6 {
		return invalid("cores %v: want 0 to 1e6", r.Cores)
	}
	if r.MemoryMb < 0 || r.DiskMb < 0 || r.Gpus < 0 {
		return invalid("resources must not be negative (memory %d MB, disk %d MB, gpus %d)", r.MemoryMb, r.DiskMb, r.Gpus)
	}
	return nil
}

// CheckWorkflow checks a workflow label (TaskSpec.workflow): empty, or
// at most MaxNameBytes of printable UTF-8.
func CheckWorkflow(w string) error {
	if len(w) > MaxNameBytes {
		return invalid("workflow label is %d bytes, over the limit of %d", len(w), MaxNameBytes)
	}
	if !utf8.ValidString(w) || strings.IndexFunc(w, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return invalid("workflow label %q: want printable UTF-8 (no control characters)", w)
	}
	return nil
}

// CheckTask checks a task spec from a client.
func CheckTask(t *pb.TaskSpec) error {
	if t == nil {
		return invalid("empty task")
	}
	if t.Call != nil {
		if p := t.Call.ArgsPath; p != "" && !slices.ContainsFunc(t.Inputs, func(in *pb.FileRef) bool { return in.Path == p }) {
			return invalid("call %s.%s: its arguments file %q is not among its inputs", t.Call.Library, t.Call.Function, p)
		}
		if err := CheckCall(t.Call); err != nil {
			return fmt.Errorf("task %q: %w", t.Name, err)
		}
	} else if strings.TrimSpace(t.Command) == "" {
		return invalid("task %q: empty command", t.Name)
	}
	if len(t.Command) > MaxCommandBytes {
		return invalid("task %q: command is %d bytes, over the limit of %d", t.Name, len(t.Command), MaxCommandBytes)
	}
	if len(t.Name) > MaxPathBytes {
		return invalid("task name is %d bytes, over the limit of %d", len(t.Name), MaxPathBytes)
	}
	if len(t.Key) > MaxNameBytes {
		return invalid("task %q: key is %d bytes, over the limit of %d", t.Name, len(t.Key), MaxNameBytes)
	}
	if err := CheckWorkflow(t.Workflow); err != nil {
		return fmt.Errorf("task %q: %w", t.Name, err)
	}
	if len(t.Inputs)+len(t.Outputs) > MaxFilesPerTask {
		return invalid("task %q: %d files, over the limit of %d", t.Name, len(t.Inputs)+len(t.Outputs), MaxFilesPerTask)
	}
	if len(t.Env) > MaxEnvPerTask {
		return invalid("task %q: %d environment variables, over the limit of %d", t.Name, len(t.Env), MaxEnvPerTask)
	}
	for _, kv := range t.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return invalid("task %q: environment entry %q: want KEY=VALUE", t.Name, kv)
		}
	}
	if err := CheckResources(t.Resources); err != nil {
		return fmt.Errorf("task %q: %w", t.Name, err)
	}
	if t.Retries < 0 || t.TimeLimitMs < 0 {
		return invalid("task %q: retries and time limit must not be negative", t.Name)
	}
	if _, ok := pb.Keep_name[int32(t.Keep)]; !ok {
		return invalid("task %q: keep %d is not one this manager knows", t.Name, t.Keep)
	}
	if t.Keep == pb.Keep_KEEP_REPLICATE && (t.Replicas < 2 || t.Replicas > 64) {
		return invalid("task %q: keep replicate %d: want 2 to 64 copies", t.Name, t.Replicas)
	}
	// A path may be both an input and an output (the command changes the
	// file in place), but not two inputs, nor two outputs.
	type slot struct{ what, path string }
	paths := make(map[slot]string, len(t.Inputs)+len(t.Outputs))
	for _, group := range []struct {
		what  string
		files []*pb.FileRef
	}{{"input", t.Inputs}, {"output", t.Outputs}} {
		for _, f := range group.files {
			if f == nil {
				return invalid("task %q: empty %s", t.Name, group.what)
			}
			if err := CheckCacheName(f.Name); err != nil {
				return fmt.Errorf("task %q: %s %q: %w", t.Name, group.what, f.Path, err)
			}
			if err := CheckSandboxPath(f.Path); err != nil {
				return fmt.Errorf("task %q: %s name: %w", t.Name, group.what, err)
			}
			if len(f.Content) > MaxInlineBytes {
				return invalid("task %q: inline %s %q is %d bytes, over the limit of %d", t.Name, group.what, f.Path, len(f.Content), MaxInlineBytes)
			}
			at := slot{group.what, path.Clean(f.Path)}
			if prev, dup := paths[at]; dup {
				return invalid("task %q: two %ss at sandbox path %q (given as %q and %q): give each its own path", t.Name, group.what, at.path, prev, f.Path)
			}
			paths[at] = f.Path
		}
	}
	return nil
}

// CheckSubmit checks a whole submit request.
func CheckSubmit(r *pb.SubmitRequest) error {
	if len(r.Tasks) == 0 {
		return invalid("submit with no tasks")
	}
	if len(r.Tasks) > MaxTasksPerCall {
		return invalid("submit of %d tasks, over the limit of %d per call", len(r.Tasks), MaxTasksPerCall)
	}
	if len(r.Session) > MaxNameBytes {
		return invalid("session name over %d bytes", MaxNameBytes)
	}
	keys := make(map[string]bool, len(r.Tasks))
	inline := 0
	if len(r.Files) > MaxTasksPerCall {
		return invalid("submit declares %d files, over the limit of %d", len(r.Files), MaxTasksPerCall)
	}
	for _, d := range r.Files {
		if err := CheckFileDecl(d); err != nil {
			return err
		}
	}
	for i, t := range r.Tasks {
		if err := CheckTask(t); err != nil {
			return err
		}
		if t.Key != "" {
			if keys[t.Key] {
				return invalid("task %q: key %q is given to two tasks of this request", t.Name, t.Key)
			}
			keys[t.Key] = true
		}
		for _, f := range t.Inputs {
			if inline += len(f.Content); inline > MaxInlinePerMessage {
				return invalid("submit carries over %d bytes of inline files: send fewer tasks per call", MaxInlinePerMessage)
			}
		}
		for _, a := range t.After {
			if int(a) >= len(r.Tasks) || int(a) == i {
				return invalid("task %q: after index %d is not another task of this request", t.Name, a)
			}
		}
	}
	return nil
}

// CheckFileDecl checks a file declaration from a client.
func CheckFileDecl(d *pb.FileDecl) error {
	if d == nil {
		return invalid("empty file declaration")
	}
	if err := CheckCacheName(d.Name); err != nil {
		return err
	}
	switch d.Kind {
	case pb.FileKind_FILE_KIND_MANAGER, pb.FileKind_FILE_KIND_TEMP, pb.FileKind_FILE_KIND_OUTPUT:
	case pb.FileKind_FILE_KIND_URL:
		scheme, rest, ok := strings.Cut(d.Url, "://")
		if !ok || rest == "" || (scheme != "http" && scheme != "https" && scheme != "file") {
			return invalid("file %s: url %q: want http://, https:// or file://", d.Name, d.Url)
		}
		if len(d.Url) > MaxPathBytes {
			return invalid("file %s: url over %d bytes", d.Name, MaxPathBytes)
		}
	case pb.FileKind_FILE_KIND_UNPACK:
		if err := CheckCacheName(d.UnpackFrom); err != nil {
			return fmt.Errorf("file %s: unpack from: %w", d.Name, err)
		}
		switch d.UnpackFormat {
		case "", "tar", "tar.gz", "zip":
		default:
			return invalid("file %s: unpack format %q: want tar, tar.gz, zip or empty", d.Name, d.UnpackFormat)
		}
	default:
		return invalid("file %s: unknown kind %d", d.Name, d.Kind)
	}
	if d.Level < pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED || d.Level > pb.CacheLevel_CACHE_LEVEL_FOREVER {
		return invalid("file %s: unknown cache level %d", d.Name, d.Level)
	}
	if d.Replicas > 64 {
		return invalid("file %s: %d replicas, at most 64", d.Name, d.Replicas)
	}
	return nil
}

// Bounds on what a call carries in its messages. Larger arguments and
// results travel as files (CallSpec.args_path, Outcome.result_file).
const (
	MaxArgsBytes        = 1 << 20
	MaxCallResultInline = 1 << 20
)

// CheckCall checks a function call.
func CheckCall(c *pb.CallSpec) error {
	if err := CheckCacheName(c.Library); err != nil {
		return fmt.Errorf("library name: %w", err)
	}
	if err := CheckCacheName(c.Function); err != nil {
		return fmt.Errorf("function name: %w", err)
	}
	if c.ArgsPath != "" && len(c.Args) > 0 {
		return invalid("call %s.%s: arguments both inline and in file %q", c.Library, c.Function, c.ArgsPath)
	}
	if len(c.Args) > MaxArgsBytes {
		return invalid("call %s.%s: arguments are %d bytes, over the limit of %d (pass large data as an input file)", c.Library, c.Function, len(c.Args), MaxArgsBytes)
	}
	return nil
}

// CheckLibrary checks a library to install.
func CheckLibrary(l *pb.LibrarySpec) error {
	if l == nil {
		return invalid("empty library")
	}
	if err := CheckCacheName(l.Name); err != nil {
		return fmt.Errorf("library name: %w", err)
	}
	if strings.TrimSpace(l.Command) == "" {
		return invalid("library %s: empty command", l.Name)
	}
	switch l.Mode {
	case "", "direct", "fork":
	default:
		return invalid("library %s: mode %q: want direct or fork", l.Name, l.Mode)
	}
	if l.Slots < 0 || l.MaxInstances < 0 || l.Eager < 0 || l.StartTimeoutMs < 0 {
		return invalid("library %s: slots, instances and timeouts must not be negative", l.Name)
	}
	// Its inputs and environment follow the rules of a task's.
	return CheckTask(&pb.TaskSpec{Name: "library " + l.Name, Command: l.Command, Inputs: l.Inputs, Env: l.Env, Resources: l.Resources})
}

// CheckHello checks a worker's first message.
func CheckHello(h *pb.Hello) error {
	if h == nil {
		return invalid("the first message of a worker must be hello")
	}
	if h.Protocol != Protocol {
		return invalid("worker speaks protocol %d, the manager speaks %d: run the same trellis version on both", h.Protocol, Protocol)
	}
	if len(h.Name) > MaxNameBytes*2 {
		return invalid("worker name over %d bytes", MaxNameBytes*2)
	}
	// A worker in the manager's process skips the codec's check; the
	// journal encodes these names without one.
	if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Incarnation) {
		return invalid("worker name or incarnation %q is not UTF-8", h.Name+" "+h.Incarnation)
	}
	if err := CheckResources(h.Resources); err != nil {
		return fmt.Errorf("worker %q: %w", h.Name, err)
	}
	if h.Resources != nil && int64(len(h.Gpus)) != h.Resources.Gpus {
		return invalid("worker %q: offers %d gpus but lists %d devices", h.Name, h.Resources.Gpus, len(h.Gpus))
	}
	return nil
}
