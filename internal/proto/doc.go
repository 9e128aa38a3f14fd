// Package proto holds trellis's wire schema (trellis.proto, generated into
// trellisv1) and the validation every message gets at the edge, before any
// of it reaches the manager's core or a worker's sandbox: sizes bounded,
// names and paths checked. Both manager and worker import it; it imports
// neither.
package proto
