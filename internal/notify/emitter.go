package notify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/metrics"
	"function/internal/repair"
)

// PauseAfterTimeout is how long sends are skipped after one took the whole timeout: a sink that
// swallows requests would otherwise add the timeout to every repair of a burst (a Node of 110
// pods is repaired 8 at a time). A quick failure (refused, an error status) pauses nothing.
const PauseAfterTimeout = 15 * time.Second

// Options configure an Emitter.
type Options struct {
	Sink Sink
	// Namespace is the function's own namespace: the events' source is SourcePrefix+Namespace.
	Namespace string
	// Timeout bounds one send (0: 2 s); the caller's deadline bounds it too.
	Timeout time.Duration
	// Metrics counts the sends (nil: not counted).
	Metrics *metrics.Recorder
	// Log receives a line per failed or skipped send (nil: none).
	Log *zap.SugaredLogger
}

// Emitter sends the notifications, one synchronous send each: the function scales to zero, so
// a request must not end while its notification is still on its way. It implements
// repair.Notifier and is safe for concurrent use.
type Emitter struct {
	client  cloudevents.Client
	sink    Sink
	source  string
	timeout time.Duration
	count   *metrics.NotificationCounter
	log     *zap.SugaredLogger
	// pausedUntil is when sending resumes after a send timed out (Unix nanoseconds).
	pausedUntil atomic.Int64
}

var _ repair.Notifier = (*Emitter)(nil)

// New returns an Emitter sending to o.Sink with the CloudEvents SDK's HTTP client.
func New(o Options) (*Emitter, error) {
	if err := CheckURL(o.Sink.URL); err != nil {
		return nil, fmt.Errorf("notification sink (%s): %w", o.Sink.From, err)
	}
	t, err := transport(o.Sink.CACerts)
	if err != nil {
		return nil, fmt.Errorf("notification sink (%s): %w", o.Sink.From, err)
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithTarget(o.Sink.URL), cehttp.WithClient(http.Client{Transport: t}))
	if err != nil {
		return nil, fmt.Errorf("notification client for %s: %w", redacted(o.Sink.URL), err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop().Sugar()
	}
	e := &Emitter{client: c, sink: o.Sink, source: SourcePrefix + o.Namespace, timeout: o.Timeout, count: o.Metrics.Notifications(), log: o.Log}
	for _, t := range Types {
		e.count.Zero(t)
	}
	return e, nil
}

// SinkURL is the sink's address without its password, for logs.
func (e *Emitter) SinkURL() string { return redacted(e.sink.URL) }

// Source is the events' CloudEvent source.
func (e *Emitter) Source() string { return e.source }

// Repaired sends the notification of a repair record (repair.Notifier).
func (e *Emitter) Repaired(ctx context.Context, wf *wfv1.Workflow, rec repair.Record) {
	if e == nil {
		return
	}
	what := fmt.Sprintf("notifying the repair of node %s of workflow %s/%s", rec.NodeID, wf.Namespace, wf.Name)
	e.send(ctx, RepairEvent(e.source, wf, rec), what,
		zap.String("workflow", wf.Namespace+"/"+wf.Name), zap.String("node", rec.NodeID), zap.String("pod", rec.Pod),
		zap.String("reason", rec.Reason), zap.Strings("actions", rec.Actions))
}

// Warned sends the notification of a warning (repair.Notifier).
func (e *Emitter) Warned(ctx context.Context, wf *wfv1.Workflow, pod *corev1.Pod, w repair.Warning, dryRun bool) {
	if e == nil {
		return
	}
	nodeID, _ := repair.NodeIDOf(pod)
	what := fmt.Sprintf("notifying warning %s for node %s (pod %s) of workflow %s/%s", w.Reason, nodeID, pod.Name, wf.Namespace, wf.Name)
	e.send(ctx, WarningEvent(e.source, wf, pod, w, dryRun), what,
		zap.String("workflow", wf.Namespace+"/"+wf.Name), zap.String("node", nodeID), zap.String("pod", pod.Name),
		zap.String("reason", w.Reason))
}

// send sends ev once, within the timeout; a failure is logged with fields and counted, never
// returned: the repair it reports is already written.
func (e *Emitter) send(ctx context.Context, ev event.Event, what string, fields ...any) {
	log := e.log.With(append(fields, zap.String("ceType", ev.Type()), zap.String("ceID", ev.ID()))...)
	if until := e.pausedUntil.Load(); time.Now().UnixNano() < until {
		e.count.Count(ev.Type(), metrics.NotificationSkipped)
		log.Warnw("notification skipped: a send to the sink timed out moments ago", zap.Time("resumeAt", time.Unix(0, until)))
		return
	}
	began := time.Now()
	if err := e.deliver(ctx, ev); err != nil {
		if time.Since(began) >= e.timeout {
			e.pausedUntil.Store(time.Now().Add(PauseAfterTimeout).UnixNano())
		}
		e.count.Count(ev.Type(), metrics.NotificationFailed)
		log.Warnw("notification not sent", zap.Error(fmt.Errorf("%s: %w", what, err)))
		return
	}
	e.count.Count(ev.Type(), metrics.NotificationSent)
	log.Debugw("notification sent", zap.Duration("took", time.Since(began)))
}

// deliver posts ev to the sink with the bearer token, if any, and reports what was not a 2xx.
func (e *Emitter) deliver(ctx context.Context, ev event.Event) error {
	ctx, cancel := e.sendContext(ctx)
	defer cancel()
	// A header map of its own per send: the SDK writes the event's headers into it.
	ctx = cehttp.WithCustomHeader(ctx, e.authorization())
	if res := e.client.Send(ctx, ev); !cloudevents.IsACK(res) {
		return fmt.Errorf("sending to %s: %w", e.SinkURL(), res)
	}
	return nil
}

// sendContext bounds one send by the timeout and by the caller's deadline, but not by its
// cancellation: a sender that hung up after the repair was written must not cost its
// notification, and a notification must not hold the answer past the event's deadline.
func (e *Emitter) sendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(e.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// authorization is the header carrying the sink's token, read now: the SinkBinding controller
// renews the token before it expires, and the kubelet updates the mounted file.
func (e *Emitter) authorization() http.Header {
	h := http.Header{}
	if e.sink.TokenFile == "" {
		return h
	}
	b, err := os.ReadFile(e.sink.TokenFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No OIDC: the SinkBinding mounts no token while authentication-oidc is off.
	case err != nil:
		e.log.Warnw("notification token not read: sending without", zap.String("file", e.sink.TokenFile), zap.Error(err))
	default:
		if tok := strings.TrimSpace(string(b)); tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
	}
	return h
}
