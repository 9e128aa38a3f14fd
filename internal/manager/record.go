package manager

import (
	"trellis/internal/core"
	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
)

// taskRecord is what the loop keeps of a task until the core forgets it.
// Most tasks of a large workflow are plain: a command and its resources,
// no files, environment, tags or call, and many of them alike but for
// their names and keys. A plain task is kept as its name, its key and a
// plainSpec (the rest: about 110 bytes), which the tasks submitted one
// after another share while they differ only in name and key (plainRecord),
// instead of the generated TaskSpec and its Resources message (about 310
// bytes): with a million tasks queued, that is the manager's largest
// record (docs/benchmarks.md, capacity). Its TaskSpec is built again when
// one is needed (a dispatch).
type taskRecord struct {
	spec        *pb.TaskSpec     // the whole spec; nil for a plain task
	plain       *plainSpec       // a plain task's spec but its name and key, maybe shared; nil when spec is set
	pname, pkey string           // a plain task's name and key; "" when spec is set
	client      *clients.Session // its session: where its events go
	worker      core.WorkerID
	done        bool // its Done was sent: it runs again only to recreate files
	// dataflow: the core counts it as a dataflow task (learned when it
	// is first dispatched, or at its Done).
	dataflow bool
}

// plainSpec is what a plain task's TaskSpec sets but its name and key
// (see isPlain). It is comparable, so that alike tasks share one.
type plainSpec struct {
	command, category           string
	workflow                    string // the client's workflow label (trellis cancel --workflow)
	cores                       float64
	memoryMB, diskMB, gpus      int64
	hasResources                bool // it had a Resources message, even an empty one
	timeLimitMs, unplaceableMs  int64
	retries, priority           int32
	retryOnError, deterministic bool
	effects                     pb.Effects
}

// isPlain reports whether t can be kept as a plainSpec: it has no files,
// environment, tags, order, call or keep. TestPlainSpecKeepsEveryField fails
// when the schema gains a field that plainSpec does not keep: add the
// field here (not plain when set) or to plainSpec.
func isPlain(t *pb.TaskSpec) bool {
	return len(t.Inputs) == 0 && len(t.Outputs) == 0 && len(t.Env) == 0 && len(t.Tags) == 0 &&
		len(t.After) == 0 && t.Call == nil && t.Keep == pb.Keep_KEEP_DEFAULT && t.Replicas == 0 &&
		len(t.ProtoReflect().GetUnknown()) == 0
}

// plainRecord returns the record of plain task t of session client. Its
// plainSpec is last's when they are alike (last may be nil).
func plainRecord(t *pb.TaskSpec, client *clients.Session, last *plainSpec) *taskRecord {
	r := t.GetResources()
	p := plainSpec{command: t.Command, category: t.Category,
		cores: r.GetCores(), hasResources: r != nil, memoryMB: r.GetMemoryMb(), diskMB: r.GetDiskMb(), gpus: r.GetGpus(),
		timeLimitMs: t.TimeLimitMs, unplaceableMs: t.UnplaceableTimeoutMs, retries: t.Retries, priority: t.Priority,
		retryOnError: t.RetryOnError, deterministic: t.Deterministic, effects: t.Effects, workflow: t.Workflow}
	rec := &taskRecord{plain: last, pname: t.Name, pkey: t.Key, client: client}
	if last == nil || p != *last {
		own := p // allocated here only: p stays on the stack when shared
		rec.plain = &own
	}
	if rec.pname == rec.plain.command {
		rec.pname = rec.plain.command // one string for both, as clients name a task by its command
	}
	return rec
}

// taskSpec builds the TaskSpec of a plain task named name with key: a new
// one each time, which the caller may keep or send.
func (p *plainSpec) taskSpec(name, key string) *pb.TaskSpec {
	t := &pb.TaskSpec{Name: name, Command: p.command, Category: p.category, Key: key,
		TimeLimitMs: p.timeLimitMs, UnplaceableTimeoutMs: p.unplaceableMs, Retries: p.retries, Priority: p.priority,
		RetryOnError: p.retryOnError, Deterministic: p.deterministic, Effects: p.effects, Workflow: p.workflow}
	if p.hasResources {
		t.Resources = &pb.Resources{Cores: p.cores, MemoryMb: p.memoryMB, DiskMb: p.diskMB, Gpus: p.gpus}
	}
	return t
}

// stored returns the task's spec as it was stored at submit: the record's
// own, or for a plain task one built for the caller.
func (r *taskRecord) stored() *pb.TaskSpec {
	if r.spec != nil {
		return r.spec
	}
	return r.plain.taskSpec(r.pname, r.pkey)
}

// session is the name of the task's session.
func (r *taskRecord) session() string { return r.client.Name() }

func (r *taskRecord) call() *pb.CallSpec {
	if r.spec != nil {
		return r.spec.Call
	}
	return nil
}

func (r *taskRecord) name() string {
	if r.spec != nil {
		return r.spec.Name
	}
	return r.pname
}

func (r *taskRecord) key() string {
	if r.spec != nil {
		return r.spec.Key
	}
	return r.pkey
}

func (r *taskRecord) workflow() string {
	if r.spec != nil {
		return r.spec.Workflow
	}
	return r.plain.workflow
}

func (r *taskRecord) effects() pb.Effects {
	if r.spec != nil {
		return r.spec.Effects
	}
	return r.plain.effects
}

func (r *taskRecord) cores() float64 {
	if r.spec != nil {
		return r.spec.GetResources().GetCores()
	}
	return r.plain.cores
}

func (r *taskRecord) outputs() []*pb.FileRef {
	if r.spec != nil {
		return r.spec.Outputs
	}
	return nil
}
