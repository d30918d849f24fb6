// Package function is the argo-disruption-handler Knative function: it keeps Argo Workflows from
// hanging when Kubernetes takes their pods away. This file only hands the func runtime
// (knative.dev/func-go/http) what package wiring builds; "Architecture" in docs/dev/README.md
// draws the rest. The HTTP flavour, not the CloudEvents one, because the sender's Authorization
// header must be verified (Knative Eventing OIDC), and func-go's CloudEvents runtime does not
// hand the request to the function.
package function

import (
	"context"
	"net/http"
	"sync/atomic"

	"function/config"
	"function/internal/wiring"
)

// Function is the instanced function.
type Function struct {
	// parts is nil until Start has built them: func-go serves requests before Start returns, and
	// Ready keeps Knative from routing to us until then.
	parts atomic.Pointer[wiring.Parts]
}

// New returns the function; the func runtime calls it once.
func New() *Function { return &Function{} }

// Start reads the configuration (ADH_* environment variables, see config.Config) and builds the
// function. An invalid setting fails the start with a message naming it.
func (f *Function) Start(_ context.Context, _ map[string]string) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log, err := wiring.NewLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	p, err := wiring.Build(cfg, wiring.Options{ServeMetrics: true, Log: log})
	if err != nil {
		return err
	}
	f.parts.Store(p)
	metricsAt := p.MetricsAddress
	if metricsAt == "" {
		metricsAt = "off"
	}
	log.Infow("started", "apiServer", p.Clients.Config.Host, "dryRun", cfg.DryRun, "namespaces", cfg.Namespaces,
		"excludedNamespaces", cfg.ExcludedNamespaces, "controllerInstanceID", cfg.ControllerInstanceID, "metrics", metricsAt)
	return nil
}

// Handle receives every request: a CloudEvent in binary or structured mode.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	p := f.parts.Load()
	if p == nil {
		http.Error(w, "not started yet", http.StatusServiceUnavailable)
		return
	}
	p.Handler.ServeHTTP(w, r)
}

// Stop is called on SIGTERM. Nothing is held that the cluster does not show: every repair is
// complete or re-deliverable, and the follow-ups still waiting for the controller are ended (the
// sweep takes them) once their runs in progress finish; then the metrics listener is closed.
func (f *Function) Stop(ctx context.Context) error {
	if p := f.parts.Load(); p != nil {
		return p.Stop(ctx)
	}
	return nil
}

// Ready reports true once Start has built the function.
func (f *Function) Ready(context.Context) (bool, error) { return f.parts.Load() != nil, nil }

// Alive reports true: a stateless handler has no state that could go bad.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }
