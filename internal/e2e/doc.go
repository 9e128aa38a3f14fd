// Package e2e tests trellis as users run it: the trellis binary started as
// real manager and worker processes on 127.0.0.1, killed with signals, fed
// bad input, with results checked byte for byte. It has no code of its own.
package e2e
