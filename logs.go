package trellis

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// TaskLogs is what the manager keeps of a task's output after it ran:
// the tails of its stdout and stderr, for the newest tasks (see
// docs/dashboard.md).
type TaskLogs struct {
	Task            uint64 `json:"task"`
	Name            string `json:"name"`
	State           string `json:"state"`            // waiting, running, done
	Result          string `json:"result,omitempty"` // once done: success, failed, timed_out, ...
	ExitCode        int32  `json:"exit_code"`
	Message         string `json:"message,omitempty"`
	Worker          string `json:"worker,omitempty"` // where its last attempt ran
	Stdout          []byte `json:"stdout,omitempty"`
	Stderr          []byte `json:"stderr,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"` // only the tail is kept
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

// Logs returns what the manager keeps of task id's output. A task the
// manager does not hold is ErrNotFound.
func (c *Client) Logs(ctx context.Context, id uint64) (*TaskLogs, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/logs/%d", c.base, id), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.files.Do(req)
	if err != nil {
		return nil, fmt.Errorf("logs of task %d: %w", id, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w %s: wrong or missing secret", ErrUnauthenticated, c.addr)
	case http.StatusNotFound:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %w", strings.TrimSpace(string(msg)), ErrNotFound)
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("logs of task %d: HTTP %d: %s", id, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var l TaskLogs
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&l); err != nil {
		return nil, fmt.Errorf("logs of task %d: %w", id, err)
	}
	return &l, nil
}
