package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"trellis/internal/chart"
	"trellis/internal/txnlog"
)

func plotCmd() *cobra.Command {
	var out, calls string
	cmd := &cobra.Command{
		Use:   "plot LOG -o run.svg",
		Short: "Draw a run from its transaction log: timeline, utilisation, bytes moved, where time went",
		Long: `Draw a run from the transaction log that trellis manager --txn-log (or
trellis run --txn-log) wrote: a timeline of attempts per worker coloured by
modality (task, call, starting, library set-up, transfer), the cores in use
against the cores online, bytes moved to workers over time by route, and
where the time went (queued, starting, running, transfers), summed over
attempts. It also prints that summary.

When the log has library instances, a second figure shows each library's
cold starts (an instance's start to ready) against its warm calls (a
call's placement to its result), on a log scale: by default next to the
first, named RUN-calls.EXT; --calls sets its name.

The format follows the file's extension: .svg, .png or .pdf.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o FILE is required: where to write the figure (.svg, .png or .pdf)")
			}
			format, err := plotFormat(out)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("transaction log: %w", err)
			}
			recs, err := txnlog.Read(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("transaction log %s: %w (is it a file that --txn-log wrote?)", args[0], err)
			}
			if len(recs) == 0 {
				return fmt.Errorf("transaction log %s is empty: nothing to draw", args[0])
			}
			run := chart.Analyse(recs)
			if err := writePlot(out, func(f *os.File) error { return chart.DrawRun(f, run, format) }); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, run.Text())
			fmt.Fprintf(w, "wrote %s\n", out)
			if len(run.Libraries) == 0 {
				if calls != "" {
					return fmt.Errorf("--calls %s: the log has no library instances or calls to draw", calls)
				}
				return nil
			}
			if calls == "" {
				ext := filepath.Ext(out)
				calls = strings.TrimSuffix(out, ext) + "-calls" + ext
			}
			callsFormat, err := plotFormat(calls)
			if err != nil {
				return err
			}
			if err := writePlot(calls, func(f *os.File) error { return chart.DrawCalls(f, run, callsFormat) }); err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s\n", calls)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "the figure to write: FILE.svg, FILE.png or FILE.pdf")
	cmd.Flags().StringVar(&calls, "calls", "", "the cold-start figure to write (default: the -o name with -calls added)")
	return cmd
}

// plotFormat is the format of a figure's file name, by its extension.
func plotFormat(name string) (string, error) {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(name), "."))
	if !slices.Contains(chart.Formats, ext) {
		return "", fmt.Errorf("%s: the name must end in .svg, .png or .pdf (the format follows it)", name)
	}
	return ext, nil
}

// writePlot writes a figure to a new file at name.
func writePlot(name string, draw func(*os.File) error) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("write figure: %w", err)
	}
	if err := draw(f); err != nil {
		f.Close()
		return fmt.Errorf("draw %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write figure: %w", err)
	}
	return nil
}
