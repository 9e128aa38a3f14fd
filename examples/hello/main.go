// Command hello shows the trellis Go API: it starts an embedded manager with
// two local workers, declares files, submits a small graph of command tasks
// (a consumer that reads another task's output waits for it), and waits for
// the results.
//
//	go run ./examples/hello
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"trellis"
	"trellis/local"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := local.Start(ctx, local.Config{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	outDir, err := os.MkdirTemp("", "trellis-hello-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(outDir)

	// Three producers write a greeting each; one consumer joins them.
	var tasks []*trellis.Task
	join := trellis.NewTask("cat part-* > greeting.txt; wc -w < greeting.txt > words.txt")
	for i, who := range []string{"manager", "workers", "files"} {
		part := trellis.Output("") // stays at the manager: only the consumer reads it
		t := trellis.NewTask(fmt.Sprintf(`printf 'hello, %%s (task %%s)\n' "$WHO" "$TRELLIS_TASK_ID" > part.txt`))
		t.Env = []string{"WHO=" + who}
		t.Resources = trellis.Resources{Cores: 0.5, MemoryMB: 64}
		t.AddOutput(part, "part.txt")
		join.AddInput(part, fmt.Sprintf("part-%d", i))
		tasks = append(tasks, t)
	}
	greeting := trellis.Output(filepath.Join(outDir, "greeting.txt"))
	words := trellis.Output(filepath.Join(outDir, "words.txt"))
	join.AddOutput(greeting, "greeting.txt").AddOutput(words, "words.txt")
	// The consumer goes first: the manager still runs it last.
	handles, err := c.Submit(ctx, append([]*trellis.Task{join}, tasks...)...)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range handles {
		r, err := h.Wait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if !r.OK() {
			log.Fatalf("%v\nstderr: %s", r.Err(), r.Stderr)
		}
		fmt.Printf("task %d done on %s in %s\n", r.Task, r.Worker, r.RunTime.Round(time.Millisecond))
	}
	text, _ := os.ReadFile(greeting.Path())
	n, _ := os.ReadFile(words.Path())
	fmt.Printf("%s(%s words)\n", text, strings.TrimSpace(string(n)))
}
