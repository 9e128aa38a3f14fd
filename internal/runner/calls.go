package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"trellis"
	"trellis/internal/workflow"
	"trellis/sdk/go/library/wire"
)

// InstallLibraries installs the libraries of wf, a library file
// (workflow.LoadLibraries), as install does for a run.
func InstallLibraries(ctx context.Context, c *trellis.Client, wf *workflow.Workflow) (map[string]error, error) {
	return install(ctx, c, wf, Build(wf))
}

// install installs the plan's libraries. It returns why each library
// that could not be installed was not, by name: a client file it reads
// is missing, or the manager refused it. Other errors, such as a manager
// that cannot be reached, stop the run.
func install(ctx context.Context, c *trellis.Client, wf *workflow.Workflow, plan *Plan) (map[string]error, error) {
	failed := make(map[string]error)
	for i, lib := range plan.Libraries {
		if err := missingInput(wf, wf.Libraries[i]); err != nil {
			failed[lib.Name] = err
			continue
		}
		if err := c.Install(ctx, lib); errors.Is(err, trellis.ErrInvalid) {
			failed[lib.Name] = err
		} else if err != nil {
			return nil, err
		}
	}
	return failed, nil
}

// missingInput says which client file that lib reads is missing, if one
// is: the manager refuses a library that reads one, where a task that
// reads one fails on its own.
func missingInput(wf *workflow.Workflow, lib workflow.Library) error {
	for _, in := range lib.Inputs {
		path := in.Local
		if in.File != "" {
			path = declaredPath(wf.Files, in.File)
		}
		if path == "" || in.Producer >= 0 {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("input %q: %w", in.Name, err)
		}
	}
	return nil
}

// declaredPath returns the client path of the declared file name, or of
// the file it is unpacked from, or "" when its data is not at the client.
func declaredPath(files []workflow.File, name string) string {
	for range len(files) + 1 { // unpacks do not loop: the workflow package checked
		i := slices.IndexFunc(files, func(f workflow.File) bool { return f.Name == name })
		switch {
		case i < 0:
			return ""
		case files[i].Kind == workflow.Unpack:
			name = files[i].Unpack
		case files[i].Kind == workflow.Local:
			return files[i].Local
		default:
			return ""
		}
	}
	return ""
}

// holdBack reads the args files of the plan's calls. It returns a result
// for each call that cannot be submitted, by index: those whose library
// was not installed (failed says why) or whose args file cannot be read,
// and those that wait for them, which trellis cannot order after a call
// that is not submitted with them.
func holdBack(wf *workflow.Workflow, plan *Plan, failed map[string]error) map[int]*trellis.Result {
	unsent := make(map[int]*trellis.Result)
	notSent := func(wc workflow.Call, format string, args ...any) *trellis.Result {
		return &trellis.Result{Name: callName(wc), Kind: trellis.InputMissing, Message: fmt.Sprintf(format, args...)}
	}
	for i, wc := range wf.Calls {
		if err := failed[wc.Library]; err != nil {
			unsent[i] = notSent(wc, "library %q was not installed: %v", wc.Library, err)
			continue
		}
		if wc.ArgsFile == "" {
			continue
		}
		args, err := readArgsFile(wc.ArgsFile)
		if err != nil {
			unsent[i] = notSent(wc, "args_file: %v", err)
			continue
		}
		plan.Calls[i].Call.Args = args
	}
	// Calls come in any order: go round until no call is newly held back.
	for changed := len(unsent) > 0; changed; {
		changed = false
		for i, wc := range wf.Calls {
			if unsent[i] != nil {
				continue
			}
			for _, a := range wc.AfterCalls {
				if unsent[a] != nil {
					unsent[i] = notSent(wc, "not submitted: it waits for %s, which could not be", callName(wf.Calls[a]))
					changed = true
					break
				}
			}
		}
	}
	return unsent
}

// readArgsFile reads a call's arguments, which must fit in a library's
// frame (the client sends those too large for a message as a file).
func readArgsFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > wire.MaxBody {
		return nil, fmt.Errorf("%s holds %d bytes, over the %d that a call may carry", path, fi.Size(), wire.MaxBody)
	}
	return os.ReadFile(path)
}

// writeResult writes the result of a call that succeeded to its output
// path, if it has one. A result that cannot be written fails the call.
func writeResult(wc workflow.Call, r *trellis.Result) {
	if wc.Output == "" || !r.OK() {
		return
	}
	if err := writeFile(wc.Output, r.Output); err != nil {
		r.Kind, r.Message = trellis.Failed, fmt.Sprintf("write output: %v", err)
	}
}

// writeFile writes data to path through a temporary file in the same
// directory, so that path never holds a partial result.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".trellis-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
