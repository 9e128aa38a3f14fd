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
