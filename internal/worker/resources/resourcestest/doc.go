// Package resourcestest provides a fake nvidia-smi for tests of packages that
// detect GPUs through package resources.
//
// Contract: FakeNvidiaSMI(t, n) returns a fresh directory holding an
// executable nvidia-smi that, asked what resources.DetectGPUs asks, prints
// the n GPUs that GPUs(n) returns, and fails on any other arguments. Put the
// directory on PATH with t.Setenv; the script needs nothing else on PATH.
package resourcestest
