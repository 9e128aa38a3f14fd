// Package metrics serves the manager's state in the Prometheus text format
// at /metrics.
//
// Every scrape reads one published manager.Snapshot and turns it into
// metrics; it never enters the manager's loop and keeps no state of its
// own, so a scrape costs the loop at most one snapshot build (the one any
// status reader would cause), however many scrapers there are. Names and
// labels are listed in docs/status.md.
package metrics
