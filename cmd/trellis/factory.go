package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"trellis/internal/factory"
)

func factoryCmd() *cobra.Command {
	var (
		secretFile, batch, name string
		ctls                    clientTLS
		lim                     factory.Limits
		interval, idleExit      time.Duration
		drain                   time.Duration
		startTimeout, timeLimit time.Duration
		partition, outputDir    string
		kube                    kubeFlags
		configFile              string
	)
	cmd := &cobra.Command{
		Use:   "factory HOST:PORT",
		Short: "Keep the manager at HOST:PORT supplied with workers from a batch system",
		Long: `Keep a manager supplied with workers. Each cycle the factory reads the
manager's demand by resource shape (tasks waiting without a place, library
instances that waiting calls need), packs it into workers of the size given
(--cores, --memory, --disk, --gpus), and submits worker jobs, between --min
and --max, at most --per-cycle a cycle, never more pending than the waiting
work can use. Its workers exit after --idle-exit without work. Each decision
is logged with its reason. SIGTERM or SIGINT cancels every job it submitted
(each worker drains: its tasks may finish for --drain-timeout, then go back
to the manager) and waits for them to go.

Batch systems: local (worker processes on this machine), slurm (sbatch,
squeue, scancel: each job asks for --cpus-per-task, --mem, --gres=gpu:N of
the worker's size and --time-limit), condor (condor_submit, condor_q,
condor_rm: request_cpus, request_memory, request_disk, request_gpus,
allowed_execute_duration; a held job is removed and its HoldReason logged),
kubernetes (one pod a worker, never restarted, in --namespace from --image,
with requests and limits cpu, memory, ephemeral-storage, nvidia.com/gpu and
the Secret --kube-secret mounted where --secret-file is). A job whose worker
has not connected --start-timeout after its submission is cancelled and another submitted; a
refused submission is retried later, doubling the wait.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := readSecret(secretFile)
			if err != nil {
				return err
			}
			if lim.Max < lim.Min || lim.Max <= 0 {
				return fmt.Errorf("--max %d must be positive and at least --min %d", lim.Max, lim.Min)
			}
			if lim.Worker.Cores <= 0 {
				return fmt.Errorf("--cores %g: give the cores of each worker", lim.Worker.Cores)
			}
			var reload func() (*factory.Settings, error)
			if configFile != "" {
				reload = factory.SettingsFile(configFile, factory.Settings{Limits: lim, StartTimeout: startTimeout})
				s, err := reload() // a broken file at start is an error; later, the last settings stay
				if err != nil {
					return err
				}
				lim, startTimeout = s.Limits, s.StartTimeout
			}
			var b factory.Batch
			switch batch {
			case "local":
				b = &factory.Local{Output: cmd.ErrOrStderr(), Grace: drain + 10*time.Second, Planned: lim.Max}
			case "slurm":
				b = &factory.Slurm{TimeLimit: timeLimit, Partition: partition, OutputDir: outputDir}
			case "condor":
				b = &factory.Condor{TimeLimit: timeLimit, OutputDir: outputDir, Log: logger(cmd)}
			case "kubernetes":
				if name == "" {
					return fmt.Errorf("--batch kubernetes: give --name, the pods' name prefix and label (a DNS label: lower-case letters, digits, '-')")
				}
				if b, err = kube.batch(timeLimit, drain, name, secretFile, logger(cmd)); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--batch %q: this factory knows local, slurm, condor and kubernetes", batch)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(secretFile)
			if err != nil {
				return err
			}
			worker := append([]string{self, "worker", args[0], "--secret-file", abs, "--idle-exit", idleExit.String(), "--drain-timeout", drain.String()}, ctls.args()...)
			if name == "" {
				name = "factory-" + strconv.Itoa(os.Getpid())
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := ctls.dial(ctx, args[0], secret)
			if err != nil {
				return err
			}
			defer c.Close()
			log := logger(cmd)
			log.Info("factory", "manager", args[0], "batch", batch, "min", lim.Min, "max", lim.Max, "worker_cores", lim.Worker.Cores)
			return factory.Run(ctx, factory.Config{Limits: lim, Name: name, Batch: batch, Worker: worker, Interval: interval, StartTimeout: startTimeout, Reload: reload, Log: log}, c, b)
		},
	}
	f := cmd.Flags()
	f.StringVar(&secretFile, "secret-file", "", "file holding the shared secret (required)")
	ctls.flags(f)
	f.StringVar(&batch, "batch", "local", "batch system: local, slurm, condor or kubernetes")
	f.StringVar(&name, "name", "", "prefix of the workers' names (default: factory-PID)")
	f.IntVar(&lim.Min, "min", 0, "workers to keep even without work")
	f.IntVar(&lim.Max, "max", 10, "workers at most, connected or pending")
	f.IntVar(&lim.PerCycle, "per-cycle", 10, "job submissions per cycle at most")
	f.Float64Var(&lim.Worker.Cores, "cores", 1, "cores of each worker")
	f.Int64Var(&lim.Worker.MemoryMB, "memory", 0, "memory of each worker in MB (default: what it detects)")
	f.Int64Var(&lim.Worker.DiskMB, "disk", 0, "disk of each worker in MB (default: what it detects)")
	f.IntVar(&lim.Worker.GPUs, "gpus", 0, "GPUs of each worker")
	f.DurationVar(&interval, "interval", 5*time.Second, "time between cycles")
	f.DurationVar(&idleExit, "idle-exit", time.Minute, "workers exit after running nothing for this long")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "a cancelled worker lets its tasks finish this long, then hands them back")
	f.DurationVar(&startTimeout, "start-timeout", 10*time.Minute, "cancel a job whose worker has not connected this long after submission, and submit another; 0 waits for ever")
	f.DurationVar(&timeLimit, "time-limit", 0, "each job's time limit in the batch system (slurm: --time, in whole minutes; condor: allowed_execute_duration); 0 the batch system's default")
	f.StringVar(&partition, "partition", "", "slurm partition of the jobs (default: the cluster's default)")
	f.StringVar(&outputDir, "output-dir", "", "directory of the jobs' output files (slurm: NAME-JOBID.out, condor: NAME.out and NAME.err; default: the current directory), on a file system the nodes share")
	f.StringVar(&configFile, "config", "", "YAML file of settings that override the flags of the same names (min, max, per-cycle, cores, memory, disk, gpus, start-timeout), re-read each cycle it changed")
	kube.flags(f)
	return cmd
}
