// Package workflow reads trellis workflow files.
//
// A workflow file is a YAML document (format version 1) that declares a
// list of command tasks. Each task runs a shell command in a private
// sandbox directory; its inputs are copied into the sandbox from client
// paths or inline buffers, and its outputs are brought back to client
// paths. A "files" section may also declare named files (local files,
// buffers, URLs, unpacked archives and temp files) that inputs and
// outputs name as {file: NAME}; a temp file is written by exactly one
// task and stays on the workers. Dependencies follow from files: a task
// that reads a path or a temp file that another task writes (or a
// directory unpacked from such a temp file) waits for that task. Tasks
// may also name other tasks in "after" for explicit ordering.
//
// A "libraries" section declares long-running processes that serve
// function calls, with inputs like a task's; a "calls" section declares
// calls of their functions, with JSON arguments (from YAML, or read from
// a file when the workflow runs) and an optional client path for the
// result. A call waits for the tasks and calls it names in "after" and
// for the tasks that write its library's inputs. Tasks never wait for
// calls, and nothing reads a call's result path: a result reaches the
// client only.
//
// Load and Parse turn a file into a Workflow whose paths are absolute,
// whose defaults have been applied, and whose dependencies have been
// resolved into task and call indexes. The result is validated as a whole: when
// anything is wrong, they return no Workflow and an ErrorList that names
// every problem found (up to a limit) with its file, line and column, in
// the style of a compiler.
//
// The package never touches the files that a workflow names: a missing
// input is not an error here, because it must only stop the task that
// reads it. The runner reports such problems per task at run time.
//
// See docs/workflow.md for the user's reference of the format.
package workflow
