// Package function is the argo-disruption-handler Knative function: it keeps Argo Workflows from
// hanging when Kubernetes takes their pods away. This file only wires the packages together for
// the func runtime (knative.dev/func-go/http), which calls New, then Start asynchronously, and
// routes every request to Handle. The HTTP flavour, not the CloudEvents one, because the sender's
// Authorization header must be verified (Knative Eventing OIDC), and func-go's CloudEvents
// runtime does not hand the request to the function.
package function

import (
	"context"
	"net/http"
	"sync/atomic"

	"function/clients"
	"function/config"
	"function/handlers"
	"function/logs"
	"function/metrics"
	"function/workflowmeta"
)

// Function is the instanced function.
type Function struct {
	// handler is nil until Start has built the clients: func-go serves requests before Start
	// returns, and Ready keeps Knative from routing to us until then.
	handler atomic.Pointer[handlers.Handler]
	// stopMetrics closes the /metrics listener (nil when off).
	stopMetrics func(context.Context) error
}

// New returns the function; the func runtime calls it once.
func New() *Function { return &Function{} }

// Start reads the configuration (ADH_* environment variables, see config.Config) and builds the
// clients. An invalid setting fails the start with a message naming it.
func (f *Function) Start(_ context.Context, _ map[string]string) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log, err := logs.New(cfg.LogLevel)
	if err != nil {
		return err
	}
	rc, err := clients.RESTConfig(clients.Options{QPS: cfg.KubeQPS, Burst: cfg.KubeBurst, Timeout: cfg.EventTimeout, UserAgent: workflowmeta.Component})
	if err != nil {
		return err
	}
	var rec *metrics.Recorder
	metricsAt := "off"
	if cfg.MetricsAddress != "" {
		rec = metrics.New()
		if metricsAt, f.stopMetrics, err = rec.Serve(cfg.MetricsAddress); err != nil {
			// Repairs must not depend on metrics: run without them, loudly.
			log.Errorw("metrics not served", "address", cfg.MetricsAddress, "error", err)
			rec, metricsAt = nil, "off"
		} else {
			rc.Wrap(rec.WrapTransport)
		}
	}
	cs, err := clients.New(rc)
	if err != nil {
		return err
	}
	h := handlers.New(cfg, cs, log)
	h.Metrics, h.Repairer.Metrics = rec, rec
	f.handler.Store(h)
	log.Infow("started", "apiServer", rc.Host, "dryRun", cfg.DryRun, "namespaces", cfg.Namespaces,
		"excludedNamespaces", cfg.ExcludedNamespaces, "instanceID", cfg.InstanceID, "metrics", metricsAt)
	return nil
}

// Handle receives every request: a CloudEvent in binary or structured mode.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	h := f.handler.Load()
	if h == nil {
		http.Error(w, "not started yet", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// Stop is called on SIGTERM. Nothing is held that the cluster does not show: every repair is
// complete or re-deliverable, and the follow-ups still waiting for the controller are ended (the
// sweep takes them) once their runs in progress finish; then the metrics listener is closed.
func (f *Function) Stop(ctx context.Context) error {
	if h := f.handler.Load(); h != nil {
		h.Repairer.FollowUps.Stop(ctx)
	}
	if f.stopMetrics != nil {
		return f.stopMetrics(ctx)
	}
	return nil
}

// Ready reports true once Start has built the clients.
func (f *Function) Ready(context.Context) (bool, error) { return f.handler.Load() != nil, nil }

// Alive reports true: a stateless handler has no state that could go bad.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }
