package main

import "github.com/spf13/cobra"

func benchCoreCmd() *cobra.Command {
	return &cobra.Command{Use: "core", Short: "not yet wired", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return nil }}
}
