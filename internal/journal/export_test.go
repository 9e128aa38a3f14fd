package journal

// SetDropChunk sets how many records one Drop deletes, and returns a
// function that restores it.
func SetDropChunk(n Seq) (restore func()) {
	old := dropChunk
	dropChunk = n
	return func() { dropChunk = old }
}
