// The tool's subcommands, as the kubectl plugin runs them: `kubectl argo-disruption-handler
// sweep …`. One place, so that the plugin and the function's binary share one command.

package sweepcmd

import (
	"context"
	"fmt"
	"io"
)

// Plugin is the name kubectl runs the plugin binary kubectl-argo_disruption_handler by.
const Plugin = "kubectl argo-disruption-handler"

// Main runs the subcommand args name (args without the program), as prog ("kubectl
// argo-disruption-handler" for the plugin), and returns the exit status.
func Main(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		toolUsage(stderr, prog)
		return ExitError
	}
	switch args[0] {
	case "sweep":
		return Run(ctx, prog, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		toolUsage(stdout, prog)
		return ExitClean
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	toolUsage(stderr, prog)
	return ExitError
}

func toolUsage(w io.Writer, prog string) {
	fmt.Fprintf(w, `Audits (and with --repair, repairs) Argo workflows stuck after Kubernetes or Karpenter took their
pods away, with the settings argo-disruption-handler is deployed with.

Usage:
  %[1]s sweep [-n NS | -A] [--repair] [-o table|json] [flags]

Commands:
  sweep   list the Running workflows stuck after a pod was taken away and the repair each needs
          (read-only unless --repair)

Run '%[1]s sweep --help' for its flags.
`, prog)
}
