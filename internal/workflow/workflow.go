package workflow

import (
	"fmt"
	"time"
)

// DefaultRetries is the number of retries a task gets when neither the
// task nor the workflow's defaults set "retries".
const DefaultRetries = 3

// Workflow is a parsed and validated workflow file.
type Workflow struct {
	// Name is the workflow's name: the "name" field, or else the file
	// name without its extension.
	Name string
	// Path is the absolute path of the file the workflow was read from,
	// or "" when it was parsed from bytes by Parse.
	Path string
	// Dir is the absolute directory that relative client paths in the
	// file were resolved against: the file's directory for Load.
	Dir string
	// Files are the files declared in the "files" section, in file
	// order. Inputs and outputs name them in Input.File and Output.File.
	Files []File
	// Tasks are the workflow's tasks in file order. Task indexes, as in
	// Task.After and Input.Producer, index this slice.
	Tasks []Task
	// Libraries are the libraries of the "libraries" section, in file
	// order. Calls name them in Call.Library.
	Libraries []Library
	// Calls are the function calls of the "calls" section, in file order.
	// Call indexes, as in Call.AfterCalls, index this slice.
	Calls []Call
}

// FileKind says where the data of a declared file comes from.
type FileKind int

// Kinds of declared file, one for each kind key of the "files" section.
const (
	Local  FileKind = iota + 1 // a file or directory at the client: File.Local
	Buffer                     // contents given in the workflow: File.Buffer
	URL                        // fetched by each worker itself: File.URL
	Temp                       // written by one task, kept in worker caches
	Unpack                     // a directory unpacked on the worker from File.Unpack
)

// String returns the key that declares the kind, such as "temp".
func (k FileKind) String() string {
	switch k {
	case Local:
		return "local"
	case Buffer:
		return "buffer"
	case URL:
		return "url"
	case Temp:
		return "temp"
	case Unpack:
		return "unpack"
	}
	return fmt.Sprintf("FileKind(%d)", int(k))
}

// File is a named file declared in the "files" section. Tasks read it
// with an input {file: NAME}; a Temp file is also written by exactly
// one task, with an output {file: NAME}. Kind says which of Local,
// Buffer, URL and Unpack (with Format) describe the data.
type File struct {
	// Name is the file's name, unique among the workflow's files.
	Name string
	// Line is the line of the file's declaration.
	Line int
	// Kind says where the file's data comes from.
	Kind FileKind
	// Local is the absolute client path of a Local file. It may name a
	// directory.
	Local string
	// Buffer holds the contents of a Buffer file.
	Buffer []byte
	// URL is where workers fetch a URL file from: an http, https or
	// file URL, as written.
	URL string
	// Unpack is the name of the declared file that an Unpack file is
	// unpacked from.
	Unpack string
	// Format is the archive format of an Unpack file: "tar", "tar.gz",
	// "zip", or "" to tell by the archive's content.
	Format string
	// Cache is how long workers keep the file: "task", "workflow",
	// "worker" or "forever", or "" when not set (the default, workflow).
	Cache string
	// Replicas is how many workers a Temp file should be kept on, or 0
	// when not set.
	Replicas int
	// Keep keeps a Temp file for the session ("keep: true"): it is not
	// pruned, so the client may fetch it.
	Keep bool
	// PruneDepth keeps a pruned Temp file until the readers of its
	// readers, PruneDepth levels down, are done: its "prune_depth", or
	// the workflow's top-level one.
	PruneDepth int
}

// Task is one command of a workflow, with its defaults applied.
type Task struct {
	// Name is the task's name, unique in the workflow.
	Name string
	// Line is the line of the task in the workflow file.
	Line int
	// Command is run with /bin/sh -c in the task's sandbox directory.
	Command string
	// Inputs are the files placed in the sandbox before the command
	// runs, sorted by Name.
	Inputs []Input
	// Outputs are the files brought back from the sandbox after the
	// command succeeds, sorted by Name.
	Outputs []Output
	// Env holds the command's extra environment as "KEY=VALUE" strings,
	// sorted by key.
	Env []string
	// Cores is the number of CPU cores the task needs; fractions are
	// allowed. Zero means not declared.
	Cores float64
	// MemoryMB is the memory the task needs in MB (1 MB = 1024*1024
	// bytes). Zero means not declared.
	MemoryMB int64
	// DiskMB is the sandbox disk space the task needs in MB. Zero means
	// not declared.
	DiskMB int64
	// GPUs is the number of GPUs the task needs.
	GPUs int
	// Retries is how many times the task is tried again after a system
	// failure such as a lost worker. It is DefaultRetries unless set.
	Retries int
	// RetryOnError also spends retries when the command itself fails,
	// times out or exceeds its resources.
	RetryOnError bool
	// TimeLimit is the longest the command may run. Zero means no limit.
	TimeLimit time.Duration
	// Unplaceable is how long the task may wait while no connected worker
	// could run it before it fails: zero when not set (the manager's
	// --unplaceable-timeout), negative when set to 0 (wait for ever).
	Unplaceable time.Duration
	// Priority orders ready tasks: higher runs first.
	Priority int
	// Deterministic and Effects are the task's recovery annotations
	// (docs/recovery.md): Effects is one of Effects, or "" (none) unless set.
	Deterministic bool
	Effects       string
	// Keep is how the task's temp outputs survive the loss of workers
	// (docs/recovery.md): "lineage", "replicate N", "checkpoint sync",
	// "checkpoint async", or "" (the manager's default).
	Keep string
	// Category groups tasks with similar resource needs.
	Category string
	// Tags are free-form labels, in file order.
	Tags []string
	// After holds the indexes of the tasks this one waits for: those it
	// names in "after" and those that write its inputs. It is sorted and
	// has no duplicates.
	After []int
}

// Input is a file placed in a task's sandbox before its command runs.
// Exactly one of File, Local and Buffer describes the source.
type Input struct {
	// Name is the file's path inside the sandbox: relative, clean and
	// never leaving the sandbox.
	Name string
	// File is the name of the declared file (in Workflow.Files) that the
	// input reads, when it is written {file: NAME}.
	File string
	// Local is the absolute client path the file is read from, when the
	// source is a path.
	Local string
	// Buffer holds the file's contents, when the source is inline.
	Buffer []byte
	// Producer is the index of the task that writes Local as an output
	// (or writes a directory that contains it), or the index of the task
	// that writes File when File is a Temp file or is unpacked from one,
	// or -1.
	Producer int
}

// Output is a file brought back from a task's sandbox.
type Output struct {
	// Name is the file's path inside the sandbox: relative, clean and
	// never leaving the sandbox.
	Name string
	// Local is the absolute client path the file is written to, or ""
	// when the output is a temp file.
	Local string
	// File is the name of the Temp file (in Workflow.Files) that the
	// output writes, when it is written {file: NAME}.
	File string
}

// Library is a long-running process that serves function calls, started
// on workers as calls need it. Its fields mirror trellis.Library.
type Library struct {
	// Name is the library's name, unique among the workflow's libraries.
	Name string
	// Line is the line of the library in the workflow file.
	Line int
	// Command starts the library process, with /bin/sh -c in the
	// library's sandbox directory.
	Command string
	// Inputs are the files placed in the library's sandbox before it
	// starts, sorted by Name. Producer indexes Workflow.Tasks.
	Inputs []Input
	// Env holds the library's extra environment as "KEY=VALUE" strings,
	// sorted by key.
	Env []string
	// Cores, MemoryMB, DiskMB and GPUs are what each instance holds, as
	// for a task. Zero means not declared.
	Cores    float64
	MemoryMB int64
	DiskMB   int64
	GPUs     int
	// Slots is how many calls one instance runs at once; 0 means not set
	// (one).
	Slots int
	// Mode is "direct", "fork", or "" when not set (direct).
	Mode string
	// Eager is how many instances start when the library is installed.
	Eager int
	// MaxInstances bounds the instances; 0 means as many as calls need.
	MaxInstances int
	// StartTimeout is how long an instance may take to start; 0 means
	// the worker's default.
	StartTimeout time.Duration
	// After holds the indexes of the tasks that write the library's
	// inputs, sorted and without duplicates.
	After []int
}

// Call is one function call of a library.
type Call struct {
	// Name is the call's name, unique among tasks and calls, or "" when
	// the call has none.
	Name string
	// Line is the line of the call in the workflow file.
	Line int
	// Library is the name of the library (in Workflow.Libraries) that
	// serves the call.
	Library string
	// Function is the name of the function called.
	Function string
	// Args holds the call's arguments, JSON-encoded from "args", or nil
	// when the call has none or reads them from ArgsFile.
	Args []byte
	// ArgsFile is the absolute client path that the arguments are read
	// from when the workflow runs, or "".
	ArgsFile string
	// Output is the absolute client path that the call's result is
	// written to, or "" when the result is not kept.
	Output string
	// Retries, RetryOnError, TimeLimit, Unplaceable and Priority are as
	// for a task. Retries is DefaultRetries unless set.
	Retries      int
	RetryOnError bool
	TimeLimit    time.Duration
	Unplaceable  time.Duration
	Priority     int
	// Deterministic and Effects are as for a task.
	Deterministic bool
	Effects       string
	// After holds the indexes of the tasks this call waits for: those it
	// names in "after" and those that write its library's inputs. It is
	// sorted and has no duplicates.
	After []int
	// AfterCalls holds the indexes of the calls this call names in
	// "after", sorted and without duplicates.
	AfterCalls []int
}

// Dependents returns the indexes of the tasks that have task i in their
// After list, in increasing order. It returns only direct dependents; to
// skip everything downstream of a failed task, apply it repeatedly.
func (w *Workflow) Dependents(i int) []int {
	var deps []int
	for j := range w.Tasks {
		for _, a := range w.Tasks[j].After {
			if a == i {
				deps = append(deps, j)
				break
			}
		}
	}
	return deps
}
