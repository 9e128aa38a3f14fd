package workflow

import (
	"sort"
	"time"
)

// build returns the task with the defaults d applied. Inputs and After
// are filled in by link.
func (t *taskSpec) build(d *taskSpec) Task {
	line := 0
	if t.node != nil {
		line = t.node.Line
	}
	task := Task{
		Name:          t.name,
		Line:          line,
		Command:       t.command.val,
		Cores:         t.cores.or(d.cores).val,
		MemoryMB:      t.memoryMB.or(d.memoryMB).val,
		DiskMB:        t.diskMB.or(d.diskMB).val,
		GPUs:          t.gpus.or(d.gpus).val,
		Retries:       t.retries.or(d.retries).or(set(DefaultRetries)).val,
		RetryOnError:  t.retryOnError.or(d.retryOnError).val,
		TimeLimit:     t.timeLimit.or(d.timeLimit).val,
		Unplaceable:   unplaceable(t.unplaceable.or(d.unplaceable)),
		Priority:      t.priority.or(d.priority).val,
		Category:      t.category.or(d.category).val,
		Tags:          t.tags.or(d.tags).val,
		Env:           mergeEnv(d.env.val, t.env.val),
		Deterministic: t.determinism.or(d.determinism).val,
		Effects:       t.effects.or(d.effects).val,
		Keep:          t.keep.or(d.keep).val,
	}
	if len(task.Tags) == 0 {
		task.Tags = nil
	}
	for _, out := range t.outputs {
		task.Outputs = append(task.Outputs, out.Output)
	}
	sort.Slice(task.Outputs, func(a, b int) bool { return task.Outputs[a].Name < task.Outputs[b].Name })
	return task
}

// mergeEnv returns the variables of defaults overridden by those of the
// task, as sorted "KEY=VALUE" strings.
func mergeEnv(defaults, task map[string]string) []string {
	merged := map[string]string{}
	for k, v := range defaults {
		merged[k] = v
	}
	for k, v := range task {
		merged[k] = v
	}
	if len(merged) == 0 {
		return nil
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, len(keys))
	for i, k := range keys {
		env[i] = k + "=" + merged[k]
	}
	return env
}

// unplaceable is an "unplaceable_timeout" as Task.Unplaceable holds it: 0
// when not set, negative when set to 0 (wait for ever).
func unplaceable(o opt[time.Duration]) time.Duration {
	if o.ok && o.val == 0 {
		return -1
	}
	return o.val
}
