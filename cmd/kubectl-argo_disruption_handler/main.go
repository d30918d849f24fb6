// Command kubectl-argo_disruption_handler is the kubectl plugin of argo-disruption-handler: on the
// PATH, `kubectl argo-disruption-handler sweep …` runs the same audit as
// `argo-disruption-handler sweep …` (package sweepcmd; docs/audit.md).
//
//	go build -o ~/.local/bin/kubectl-argo_disruption_handler ./cmd/kubectl-argo_disruption_handler
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"function/cmd/argo-disruption-handler/sweepcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := sweepcmd.Main(ctx, sweepcmd.Plugin, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
