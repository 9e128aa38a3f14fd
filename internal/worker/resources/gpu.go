package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nvidiaSMIArgs are the arguments DetectGPUs passes to nvidia-smi.
var nvidiaSMIArgs = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"}

// nvidiaSMITimeout bounds one nvidia-smi run.
const nvidiaSMITimeout = 10 * time.Second

// maxErrorOutput bounds how much of nvidia-smi's output an error quotes.
const maxErrorOutput = 1024

// DetectGPUs runs `nvidia-smi --query-gpu=index,uuid,name,memory.total
// --format=csv,noheader,nounits`, found on PATH, with a 10 s timeout. Without
// nvidia-smi on PATH it returns (nil, nil). When nvidia-smi fails, the error
// quotes its stderr (or its stdout, where nvidia-smi writes most errors).
func DetectGPUs(ctx context.Context) ([]GPU, error) {
	bin, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, nvidiaSMITimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.CommandContext(ctx, bin, nvidiaSMIArgs...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = time.Second
		err = cmd.Run()
		// A freshly written script can be briefly busy (Go issue 22315).
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 2 {
			break
		}
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		out := bytes.TrimSpace(stderr.Bytes())
		if len(out) == 0 {
			out = bytes.TrimSpace(stdout.Bytes())
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("resources: run nvidia-smi: %w", err)
		}
		if len(out) > maxErrorOutput {
			out = append(out[:maxErrorOutput:maxErrorOutput], "..."...)
		}
		return nil, fmt.Errorf("resources: run nvidia-smi: %w: %s", err, out)
	}
	return ParseNvidiaSMI(stdout.Bytes())
}

// ParseNvidiaSMI parses the output of `nvidia-smi
// --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`:
// one line per GPU, fields separated by commas and optional spaces. Blank
// lines are skipped; a memory of "[N/A]" reads as 0. A malformed line is an
// error that quotes it.
func ParseNvidiaSMI(out []byte) ([]GPU, error) {
	var gpus []GPU
	for i, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		g, why := parseGPULine(line)
		if why != "" {
			return nil, fmt.Errorf("resources: parse nvidia-smi line %d %q: %s", i+1, line, why)
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

// parseGPULine parses one line, or says what is wrong with it.
func parseGPULine(line string) (GPU, string) {
	if n := strings.Count(line, ","); n < 3 {
		return GPU{}, fmt.Sprintf("want 4 comma-separated fields, have %d", n+1)
	}
	index, rest, _ := strings.Cut(line, ",")
	uuid, rest, _ := strings.Cut(rest, ",")
	// A name could hold commas; the memory is always the last field.
	cut := strings.LastIndexByte(rest, ',')
	name, mem := rest[:cut], rest[cut+1:]
	index, uuid, name, mem = strings.TrimSpace(index), strings.TrimSpace(uuid), strings.TrimSpace(name), strings.TrimSpace(mem)

	var g GPU
	var err error
	if g.Index, err = strconv.Atoi(index); err != nil || g.Index < 0 {
		return GPU{}, fmt.Sprintf("bad index %q", index)
	}
	if g.UUID = uuid; g.UUID == "" {
		return GPU{}, "empty UUID"
	}
	if g.Name = name; g.Name == "" {
		return GPU{}, "empty name"
	}
	switch mem {
	case "[N/A]", "N/A":
	default:
		if g.MemoryMB, err = strconv.ParseInt(mem, 10, 64); err != nil || g.MemoryMB < 0 {
			return GPU{}, fmt.Sprintf("bad memory.total %q", mem)
		}
	}
	return g, ""
}
