// Package handlers answers the CloudEvents the function receives: it decodes them through the
// event-family registry, turns each signal into repair targets, runs the repair, and maps the
// outcome to the status the sender acts on.
package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"function/config"
	"function/eventing"
	"function/eventing/pingsource"
	"function/internal/lookup"
	"function/internal/metrics"
	"function/internal/repair"
	"function/internal/senderauth"
	"function/internal/sweep"
)

// ErrTooLarge is returned for event data over the configured limit (answered 413).
var ErrTooLarge = errors.New("event data too large")

// ErrNotWorkflowPod is returned when a pod named by an event exists but carries no workflow
// label: a Reference-mode source without the label selector (answered 400 so the misconfiguration
// shows in the dead-letter sink rather than costing a read per pod for ever).
var ErrNotWorkflowPod = errors.New("pod is not a workflow pod")

// ErrSourceNotAllowed is returned for an event whose CloudEvent source is not in the configured
// allow-list (ADH_ALLOWED_SOURCES). It is answered 403: the broker does not retry a 403 (it
// retries 5xx, 404, 408, 409 and 429 only) and hands the event to the dead-letter sink with the
// reason, so a sender missing from the list loses nothing (replay it once the list is fixed) and
// a stranger's event neither loops nor is silently swallowed.
var ErrSourceNotAllowed = errors.New("CloudEvent source not allowed")

// Options are everything a Handler works with; the composition root (package wiring) builds them
// from the configuration.
type Options struct {
	// Kube reads the objects an event names (pods, Nodes).
	Kube     kubernetes.Interface
	Registry *eventing.Registry
	Repairer *repair.Repairer
	Scope    config.Scope
	Finder   lookup.Finder
	// AllowedSources, when not empty, are the CloudEvent sources acted on (config.SourceAllowed).
	AllowedSources []string
	// Sender authenticates who delivered a request (Knative Eventing OIDC); nil: not checked.
	Sender *senderauth.Authenticator
	// Sweeper and SweepLease run the safety-net sweep on a PingSource tick; SweepBudget bounds one.
	Sweeper     *sweep.Sweeper
	SweepLease  *sweep.Lease
	SweepBudget time.Duration
	// Metrics counts events and sweeps (nil: not counted).
	Metrics *metrics.Recorder
	// MaxBodyBytes bounds the event data.
	MaxBodyBytes int
	// NodeRepairWorkers bounds the pods of one node-wide signal repaired at once (0: one).
	NodeRepairWorkers int
	// Timeout bounds the work for one event.
	Timeout time.Duration
	Log     *zap.SugaredLogger
}

// Handler handles one CloudEvent at a time; it is safe for concurrent use.
type Handler struct {
	o     Options
	scope scopeWatch
}

// New returns a Handler working with o.
func New(o Options) *Handler { return &Handler{o: o} }

// Stop ends the follow-ups still waiting for the controller once their runs in progress finish:
// nothing else is held that the cluster does not show.
func (h *Handler) Stop(ctx context.Context) { h.o.Repairer.StopFollowUps(ctx) }

// Handle is the function's CloudEvents entry point. It answers with no event (a reply would be
// re-injected into the broker); the error, when not nil, is an HTTP result.
func (h *Handler) Handle(ctx context.Context, e event.Event) error {
	log := h.o.Log.With(zap.String("ceID", e.ID()), zap.String("ceType", e.Type()), zap.String("ceSubject", e.Subject()))
	ctx = logging.WithLogger(ctx, log)
	if timeout := h.timeoutFor(e); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	began := time.Now()
	ignored := false
	err := h.handle(ctx, e, &ignored)
	status := StatusOf(err)
	outcome := metrics.Handled
	if ignored {
		outcome = metrics.Ignored
	}
	defer func() { h.o.Metrics.Event(h.metricType(e.Type()), outcome, time.Since(began)) }()
	switch {
	case err == nil:
		return nil
	case status < 500:
		outcome = metrics.Refused
		log.Warnw("event refused", zap.Int("status", status), zap.Error(err))
	default:
		outcome = metrics.Failed
		log.Errorw("event failed; the sender should retry", zap.Int("status", status), zap.Error(err))
	}
	return cehttp.NewResult(status, "%s", oneLine(err))
}

// handle sets *ignored when the event needed nothing (for the metrics).
func (h *Handler) handle(ctx context.Context, e event.Event, ignored *bool) error {
	if h.deadLetter(ctx, e) {
		*ignored = true
		return nil
	}
	// Then, before the data is even looked at: an event from a sender not on the list costs
	// nothing and reaches no decoder and no API call.
	if !config.SourceAllowed(e.Source(), h.o.AllowedSources) {
		return fmt.Errorf("%w: %q (ADH_ALLOWED_SOURCES)", ErrSourceNotAllowed, e.Source())
	}
	if n := len(e.Data()); n > h.o.MaxBodyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, h.o.MaxBodyBytes)
	}
	sig, err := h.o.Registry.Decode(e)
	if err != nil {
		return err
	}
	switch s := sig.(type) {
	case eventing.Ignore:
		*ignored = true
		h.ignore(ctx, metrics.IgnoredNotRelevant, s.Reason)
		return nil
	case *eventing.PodChange:
		return h.podChange(ctx, s)
	case *eventing.NodeGone:
		return h.nodeGone(ctx, s)
	case *eventing.Disruption:
		return h.disruption(ctx, s)
	case *eventing.Sweep:
		return h.sweep(ctx, s)
	}
	return fmt.Errorf("%w: no handler for signal %T", eventing.ErrUnknownType, sig)
}

// deadLetter logs and counts an event the broker could not deliver and handed to its
// dead-letter sink (the chart's Broker: the function itself). Nothing in it is acted on: it
// failed every retry already, and the sweep covers what it was about. Dead letters carry the
// knativeerrordest extension, with knativeerrorcode and knativeerrordata (the answer's body,
// base64).
func (h *Handler) deadLetter(ctx context.Context, e event.Event) bool {
	ext := e.Extensions()
	dest, ok := ext["knativeerrordest"]
	if !ok {
		return false
	}
	code := fmt.Sprint(ext["knativeerrorcode"])
	body, _ := base64.StdEncoding.DecodeString(fmt.Sprint(ext["knativeerrordata"]))
	logging.FromContext(ctx).Errorw("dead letter: the broker gave up delivering this event", zap.String("source", e.Source()),
		zap.Any("destination", dest), zap.String("code", code), zap.String("answer", string(body)))
	h.o.Metrics.DeadLetter(h.metricType(e.Type()), code)
	return true
}

// metricType keeps the metrics' type label bounded: a type no decoder knows counts as "unknown".
func (h *Handler) metricType(t string) string {
	if h.o.Registry != nil && h.o.Registry.Knows(t) {
		return t
	}
	return "unknown"
}

// sweepSlack is what a sweep may run past its budget: the workflow in progress, and the answer.
// sweepCheckpointEvery is how often at most its cursor is stored on the Lease as it advances.
const (
	sweepSlack           = 5 * time.Second
	sweepCheckpointEvery = 2 * time.Second
)

// timeoutFor is the deadline of one event: a sweep gets its budget and the slack, everything
// else the event timeout.
func (h *Handler) timeoutFor(e event.Event) time.Duration {
	if e.Type() == pingsource.Type && h.o.SweepBudget > 0 {
		return h.o.SweepBudget + sweepSlack
	}
	return h.o.Timeout
}

// received is when the function saw the event, on its own clock: grace periods count from it,
// never from a time the event carries (a late or forged event would start them early).
func (h *Handler) received() time.Time { return h.o.Repairer.Now() }

// oneLine keeps the answer to the sender short: the first line, at most 512 bytes.
func oneLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			s = s[:i]
			break
		}
	}
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}
