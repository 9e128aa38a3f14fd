// Package runner runs a parsed workflow file on a trellis client: it turns
// the workflow's tasks into trellis tasks (outputs that other tasks read
// become their dependencies), submits the whole graph at once, shows
// progress, and summarises the results. The manager orders the tasks; the
// runner only watches.
package runner
