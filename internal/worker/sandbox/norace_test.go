//go:build !race

package sandbox

// raceEnabled: the race detector is on, and allocation counts mean little.
const raceEnabled = false
