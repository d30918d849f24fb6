// Command apiserver_receive_adapter is knative.dev/eventing v0.50.0's
// cmd/apiserver_receive_adapter (the ApiServerSource receive adapter) with
// one change for running it outside a cluster next to other processes: the
// health-probe server, hard-coded by knative.dev/pkg to listen on :8080 (all
// interfaces), is not started unless ADAPTER_HEALTH_PROBES=true. The pprof
// server is moved with the upstream env var PROFILING_PORT.
package main

import (
	"os"

	filteredFactory "knative.dev/pkg/client/injection/kube/informers/factory/filtered"
	"knative.dev/pkg/signals"

	"knative.dev/eventing/pkg/adapter/apiserver"
	"knative.dev/eventing/pkg/adapter/v2"
	"knative.dev/eventing/pkg/auth"
	"knative.dev/eventing/pkg/eventingtls"
)

const component = "apiserversource"

func main() {
	ctx := signals.NewContext()
	ctx = adapter.WithInjectorEnabled(ctx)
	if os.Getenv("ADAPTER_HEALTH_PROBES") != "true" {
		ctx = adapter.WithHealthProbesDisabled(ctx)
	}

	ctx = filteredFactory.WithSelectors(ctx,
		auth.OIDCLabelSelector,
		eventingtls.TrustBundleLabelSelector,
	)

	adapter.MainWithContext(ctx, component, apiserver.NewEnvConfig, apiserver.NewAdapter)
}
