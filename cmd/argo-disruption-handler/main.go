// Command argo-disruption-handler runs the function outside Knative, through the same runtime the
// func CLI generates (knative.dev/func-go/http): listen address from LISTEN_ADDRESS, else
// ADDRESS/PORT, else 127.0.0.1:8080; cluster from KUBECONFIG, else in-cluster.
//
// `argo-disruption-handler sweep [-n NS | -A] [--repair] [-o table|json] [kubectl flags]` runs the
// safety-net sweep once from a terminal, with the deployed settings, and prints what is stuck
// (package sweepcmd, also the kubectl plugin's; docs/audit.md).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	fhttp "knative.dev/func-go/http"

	function "function"
	"function/cmd/argo-disruption-handler/sweepcmd"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sweep" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := sweepcmd.Run(ctx, "argo-disruption-handler", os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if err := fhttp.Start(function.New()); err != nil {
		fmt.Fprintln(os.Stderr, "argo-disruption-handler:", err)
		os.Exit(1)
	}
}
