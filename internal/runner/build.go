package runner

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"trellis"
	"trellis/internal/workflow"
)

// Plan is a workflow in trellis's terms: the libraries that Run installs,
// then the tasks and calls that it submits together.
type Plan struct {
	Tasks     []*trellis.Task    // in workflow order
	Libraries []*trellis.Library // in workflow order
	// Calls are in workflow order. A call with an args file has no Args
	// yet: Run reads the file.
	Calls []*trellis.Task
}

// Build turns the workflow into trellis tasks, libraries and calls, in
// the same order. Each declared file becomes one *trellis.File, shared by
// every task and library that names it; so does each client path that a
// task writes and others read. The workflow must come from workflow.Load
// or workflow.Parse. Building an unpacked local file reads the archive,
// to name the unpacked directory after its content.
func Build(wf *workflow.Workflow) *Plan {
	b := &builder{files: declare(wf.Files), outputs: make(map[string]*trellis.File)}
	plan := &Plan{Tasks: make([]*trellis.Task, len(wf.Tasks)), Calls: make([]*trellis.Task, len(wf.Calls))}
	for i, wt := range wf.Tasks {
		t := &trellis.Task{Name: wt.Name, Command: wt.Command, Env: wt.Env,
			Resources: trellis.Resources{Cores: wt.Cores, MemoryMB: wt.MemoryMB, DiskMB: wt.DiskMB, GPUs: wt.GPUs},
			Retries:   wt.Retries, RetryOnError: wt.RetryOnError, TimeLimit: wt.TimeLimit, Priority: wt.Priority,
			Category: wt.Category, Tags: wt.Tags, UnplaceableTimeout: wt.Unplaceable,
			Deterministic: wt.Deterministic, Effects: effects(wt.Effects), Keep: keep(wt.Keep)}
		for _, o := range wt.Outputs {
			if o.File != "" {
				t.AddOutput(b.files[o.File], o.Name)
				continue
			}
			f := trellis.Output(o.Local)
			b.outputs[o.Local] = f
			t.AddOutput(f, o.Name)
		}
		plan.Tasks[i] = t
	}
	for i, wt := range wf.Tasks {
		t := plan.Tasks[i]
		t.Inputs = b.mounts(wt.Inputs)
		for _, a := range wt.After {
			t.After = append(t.After, plan.Tasks[a])
		}
	}
	for _, wl := range wf.Libraries {
		plan.Libraries = append(plan.Libraries, &trellis.Library{Name: wl.Name, Command: wl.Command,
			Inputs: b.mounts(wl.Inputs), Env: wl.Env,
			Resources: trellis.Resources{Cores: wl.Cores, MemoryMB: wl.MemoryMB, DiskMB: wl.DiskMB, GPUs: wl.GPUs},
			Slots:     wl.Slots, Mode: wl.Mode, MaxInstances: wl.MaxInstances, Eager: wl.Eager, StartTimeout: wl.StartTimeout})
	}
	for i, wc := range wf.Calls {
		t := trellis.NewCall(wc.Library, wc.Function, wc.Args)
		t.Name, t.Retries, t.RetryOnError, t.TimeLimit, t.Priority = callName(wc), wc.Retries, wc.RetryOnError, wc.TimeLimit, wc.Priority
		t.UnplaceableTimeout = wc.Unplaceable
		t.Deterministic, t.Effects = wc.Deterministic, effects(wc.Effects)
		for _, a := range wc.After {
			t.After = append(t.After, plan.Tasks[a])
		}
		plan.Calls[i] = t
	}
	for i, wc := range wf.Calls { // after every call exists: a call may wait for a later one
		for _, a := range wc.AfterCalls {
			plan.Calls[i].After = append(plan.Calls[i].After, plan.Calls[a])
		}
	}
	setKeys(plan)
	return plan
}

// setKeys gives every task and call a key that a run of the same file
// gives it again, so that a run that takes over a killed run's session
// resubmits the same tasks: its name, or, for a name that is not unique
// (a call without a name of its own is LIBRARY.FUNCTION), "#", its place
// among the tasks then the calls, "." and the name.
func setKeys(plan *Plan) {
	all := append(slices.Clip(plan.Tasks), plan.Calls...)
	count := make(map[string]int, len(all))
	for _, t := range all {
		count[t.Name]++
	}
	for i, t := range all {
		t.Key = t.Name
		if count[t.Name] > 1 || t.Name == "" || strings.HasPrefix(t.Name, "~") {
			t.Key = "#" + strconv.Itoa(i) + "." + t.Name
		}
	}
}

// callName is how a call is shown: its name, or LIBRARY.FUNCTION.
func callName(c workflow.Call) string {
	if c.Name != "" {
		return c.Name
	}
	return c.Library + "." + c.Function
}

// builder holds the trellis files of a workflow while it is built.
type builder struct {
	files   map[string]*trellis.File // declared files, by name
	outputs map[string]*trellis.File // client path -> the output that writes it
}

// mounts returns the trellis files for inputs, in the same order.
func (b *builder) mounts(inputs []workflow.Input) []trellis.Mount {
	var ms []trellis.Mount
	for _, in := range inputs {
		var f *trellis.File
		switch {
		case in.File != "":
			f = b.files[in.File]
		case in.Buffer != nil:
			f = trellis.Buffer(in.Buffer)
		case b.outputs[in.Local] != nil:
			f = b.outputs[in.Local]
		default:
			f = trellis.LocalFile(in.Local)
		}
		ms = append(ms, trellis.Mount{File: f, Path: in.Name})
	}
	return ms
}

// cacheLevels maps the values of a file's "cache" to trellis cache levels.
var cacheLevels = map[string]trellis.CacheLevel{
	"task":     trellis.CacheTask,
	"workflow": trellis.CacheWorkflow,
	"worker":   trellis.CacheWorker,
	"forever":  trellis.CacheForever,
}

// declare makes one trellis file for each declared file, by name. An
// unpacked file is made after the file it unpacks, whatever their order
// in the workflow; the workflow package has ruled out loops.
func declare(decls []workflow.File) map[string]*trellis.File {
	byName := make(map[string]*workflow.File, len(decls))
	for i := range decls {
		byName[decls[i].Name] = &decls[i]
	}
	files := make(map[string]*trellis.File, len(decls))
	var get func(d *workflow.File) *trellis.File
	get = func(d *workflow.File) *trellis.File {
		if f := files[d.Name]; f != nil {
			return f
		}
		var f *trellis.File
		switch d.Kind {
		case workflow.Local:
			f = trellis.LocalFile(d.Local)
		case workflow.Buffer:
			f = trellis.Buffer(d.Buffer)
		case workflow.URL:
			f = trellis.URL(d.URL)
		case workflow.Temp:
			f = trellis.Temp()
			if d.Replicas > 0 {
				f.Replicas(d.Replicas)
			}
			if d.Keep {
				f.Keep()
			}
			if d.PruneDepth > 0 {
				f.PruneDepth(d.PruneDepth)
			}
		case workflow.Unpack:
			f = trellis.Unpack(get(byName[d.Unpack]), d.Format)
		default:
			panic(fmt.Sprintf("runner: file %q has unknown kind %v", d.Name, d.Kind))
		}
		if level, ok := cacheLevels[d.Cache]; ok {
			f.Cache(level)
		}
		files[d.Name] = f
		return f
	}
	for i := range decls {
		get(&decls[i])
	}
	return files
}

// keep is a workflow file's "keep" (workflow.ParseKeep) as the API's.
func keep(k string) trellis.Keep {
	switch how, n, _ := strings.Cut(k, " "); how {
	case "lineage":
		return trellis.Lineage()
	case "replicate":
		copies, _ := strconv.Atoi(n)
		return trellis.Replicate(copies)
	case "checkpoint":
		if n == "sync" {
			return trellis.Checkpoint(trellis.CheckpointSync)
		}
		return trellis.Checkpoint(trellis.CheckpointAsync)
	}
	return trellis.Keep{}
}

// effects is a workflow file's "effects" (workflow.Effects) as the API's.
func effects(e string) trellis.Effects {
	switch e {
	case "idempotent":
		return trellis.EffectsIdempotent
	case "at-most-once":
		return trellis.EffectsAtMostOnce
	}
	return trellis.EffectsNone
}
