// Package runner runs a parsed workflow file on a trellis client: it
// installs the workflow's libraries, turns its tasks and calls into
// trellis tasks (outputs that other tasks or libraries read become their
// dependencies, as do "after" names), submits them all at once, shows
// progress, writes the results of calls to their output paths, and
// summarises the results. The manager orders the tasks and calls; the
// runner only watches.
package runner
