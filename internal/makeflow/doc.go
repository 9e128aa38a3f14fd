// Package makeflow reads Makeflow files (the "classic make" language of
// the cctools Makeflow manual) into a workflow.Workflow, so that
// `trellis run FILE.mf` runs them with the same runner as a YAML
// workflow file.
//
// A rule "targets : sources" with one command line becomes one task.
// Every source is an input and every target an output, each at a client
// path relative to the file's directory; "local->remote" gives the name
// inside the task's sandbox. A source that another rule targets makes
// the rule wait for that one. Variables ($(NAME)) are substituted when
// the file is read, with the value they have at that point of the file;
// "export NAME" adds the variable to the environment of the rules that
// follow. .MAKEFLOW CATEGORY and the CORES, MEMORY (MB), DISK (MB) and
// GPUS variables set the resources of the rules that follow, per
// category; "@NAME=value" lines under a rule set them for that rule only.
//
// LOCAL commands run as ordinary tasks: trellis has no place on the
// client to run them and still honour the rule's files, so they run in a
// sandbox on a worker (on this host with the embedded cluster).
//
// Errors are a workflow.ErrorList: every problem found, each with the
// file and line, in file order. Parse never panics on any input.
//
// See docs/makeflow.md for the user's reference.
package makeflow
