// Package web is the manager's dashboard: HTML pages on a port of their
// own, read from the manager's published snapshot and its task index,
// never from the loop.
//
// Access: every page but the sign-in page needs a session cookie that
// the sign-in page gives for the manager's secret (HttpOnly,
// SameSite=Strict), or the secret itself as a bearer header. Sessions live
// in memory, bounded in number and age; a restart signs everyone out.
//
// Live updates: one goroutine (hub.run) reads a snapshot once a second
// while a browser watches, renders the overview once for all, and hands
// it to each open event stream through a one-slot mailbox that keeps only
// the newest: the cost to the manager does not grow with the number of
// browsers, and a slow browser skips updates instead of queueing them.
package web
