// Command argo-disruption-handler runs the function outside Knative, through the same runtime the
// func CLI generates (knative.dev/func-go/cloudevents): listen address from LISTEN_ADDRESS, else
// ADDRESS/PORT, else 127.0.0.1:8080; cluster from KUBECONFIG, else in-cluster.
package main

import (
	"fmt"
	"os"

	ce "knative.dev/func-go/cloudevents"

	function "function"
)

func main() {
	if err := ce.Start(function.New()); err != nil {
		fmt.Fprintln(os.Stderr, "argo-disruption-handler:", err)
		os.Exit(1)
	}
}
