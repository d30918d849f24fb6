// Package function is the argo-disruption-handler Knative function: it keeps Argo Workflows from
// hanging when Kubernetes takes their pods away. This file only wires the packages together for
// the func runtime (knative.dev/func-go/cloudevents), which calls New, then Start asynchronously,
// and routes every CloudEvent to Handle.
package function

import (
	"context"
	"sync/atomic"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/clients"
	"function/config"
	"function/handlers"
	"function/logs"
	"function/workflowmeta"
)

// Function is the instanced function.
type Function struct {
	// handler is nil until Start has built the clients: func-go serves requests before Start
	// returns, and Ready keeps Knative from routing to us until then.
	handler atomic.Pointer[handlers.Handler]
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
	cs, err := clients.New(rc)
	if err != nil {
		return err
	}
	f.handler.Store(handlers.New(cfg, cs, log))
	log.Infow("started", "apiServer", rc.Host, "dryRun", cfg.DryRun, "namespaces", cfg.Namespaces,
		"excludedNamespaces", cfg.ExcludedNamespaces, "instanceID", cfg.InstanceID)
	return nil
}

// Handle receives every CloudEvent.
func (f *Function) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	h := f.handler.Load()
	if h == nil {
		return nil, cehttp.NewResult(503, "not started yet")
	}
	return h.Handle(ctx, e)
}

// Stop is called on SIGTERM. Nothing is held: every repair is complete or re-deliverable.
func (f *Function) Stop(context.Context) error { return nil }

// Ready reports true once Start has built the clients.
func (f *Function) Ready(context.Context) (bool, error) { return f.handler.Load() != nil, nil }

// Alive reports true: a stateless handler has no state that could go bad.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }
