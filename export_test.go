package trellis

// DirectLease returns the ID of the client's lease on library, 0 if none
// (for tests in package trellis_test).
func (c *Client) DirectLease(library string) uint64 {
	c.direct.mu.Lock()
	defer c.direct.mu.Unlock()
	if l := c.direct.leases[library]; l != nil && l.rpc != nil {
		return l.id
	}
	return 0
}

// BreakDirectStream ends the stream of the client's lease on library
// without dropping the lease, as the loss of its worker's connection while
// no call is on it would, and returns once the client has seen it end.
func BreakDirectStream(c *Client, library string) {
	c.direct.mu.Lock()
	s := c.direct.leases[library].rpc
	c.direct.mu.Unlock()
	s.close() // the worker ends the stream: its Receive fails
	<-s.done
}

// DirectStreamsOpen says how many streams of the client's leases have not
// ended.
func DirectStreamsOpen(c *Client) int {
	d := c.direct
	d.mu.Lock()
	streams := d.streamsLocked()
	d.mu.Unlock()
	open := 0
	for _, s := range streams {
		select {
		case <-s.done:
		default:
			open++
		}
	}
	return open
}

// DirectStreams says how many streams of the client's leases opened on
// connections of their own (framed) and over HTTP/2.
func DirectStreams(c *Client) (framed, http2 uint64) {
	return c.direct.framedStreams.Load(), c.direct.http2Streams.Load()
}
