package core

// listed is a list of distinct items that can drop any of them in O(1):
// the last takes the place of one dropped, so the order is the order of
// adding only until a drop. Deterministic, unlike a map's iteration.
type listed[T comparable] struct {
	items []T
	at    map[T]int // each item's index in items
}

// add appends x, which must not be listed.
func (l *listed[T]) add(x T) {
	if l.at == nil {
		l.at = make(map[T]int)
	}
	l.at[x] = len(l.items)
	l.items = append(l.items, x)
}

// drop takes x off the list, if it is there.
func (l *listed[T]) drop(x T) {
	i, ok := l.at[x]
	if !ok {
		return
	}
	delete(l.at, x)
	last := len(l.items) - 1
	if i != last {
		l.items[i] = l.items[last]
		l.at[l.items[i]] = i
	}
	var zero T
	l.items[last] = zero
	l.items = l.items[:last]
}
