package workflow

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// maxErrors is how many problems an ErrorList reports before it stops
// with "too many errors".
const maxErrors = 20

// Error is one problem in a workflow file, with its position.
type Error struct {
	File string // the file name given to Load or Parse
	Line int    // 1-based line, or 0 when unknown
	Col  int    // 1-based column, or 0 when unknown
	Msg  string // what is wrong, in lower case
}

// Error formats the problem as "file:line:col: msg", leaving out the
// parts of the position that are unknown.
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// ErrorList is the error that Load and Parse return: every problem found
// in a workflow file, ordered by position.
type ErrorList []*Error

// Error joins the problems' messages with newlines.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// finish orders the problems by position, keeping those without one last,
// and cuts the list to maxErrors.
func (l ErrorList) finish(file string) ErrorList {
	key := func(e *Error) (int, int) {
		if e.Line == 0 {
			return math.MaxInt, 0
		}
		return e.Line, e.Col
	}
	sort.SliceStable(l, func(i, j int) bool {
		li, ci := key(l[i])
		lj, cj := key(l[j])
		if li != lj {
			return li < lj
		}
		return ci < cj
	})
	if len(l) > maxErrors {
		l = append(l[:maxErrors:maxErrors], &Error{File: file, Msg: "too many errors"})
	}
	return l
}
