// Package handlers answers the CloudEvents the function receives: it decodes them through the
// event-family registry, turns each signal into repair targets, runs the repair, and maps the
// outcome to the status the sender acts on.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"function/clients"
	"function/config"
	"function/eventing"
	"function/eventing/families"
	"function/handlers/repair"
	"function/handlers/scope"
	"function/workflowmeta"
)

// ErrTooLarge is returned for event data over the configured limit (answered 413).
var ErrTooLarge = errors.New("event data too large")

// ErrNotWorkflowPod is returned when a pod named by an event exists but carries no workflow
// label: a Reference-mode source without the label selector (answered 400 so the misconfiguration
// shows in the dead-letter sink rather than costing a read per pod for ever).
var ErrNotWorkflowPod = errors.New("pod is not a workflow pod")

// Handler handles one CloudEvent at a time; it is safe for concurrent use.
type Handler struct {
	Registry *eventing.Registry
	Repairer *repair.Repairer
	Scope    scope.Scope
	// MaxBodyBytes bounds the event data.
	MaxBodyBytes int
	// Timeout bounds the work for one event.
	Timeout time.Duration
	Log     *zap.SugaredLogger
}

// Handle is the function's CloudEvents entry point. It returns no response event (a reply
// would be re-injected into the broker); the error, when not nil, is an HTTP result.
func (h *Handler) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	log := h.Log.With(zap.String("ceID", e.ID()), zap.String("ceType", e.Type()), zap.String("ceSubject", e.Subject()))
	ctx = logging.WithLogger(ctx, log)
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	err := h.handle(ctx, e)
	status := StatusOf(err)
	switch {
	case err == nil:
		return nil, nil
	case status < 500:
		log.Warnw("event refused", zap.Int("status", status), zap.Error(err))
	default:
		log.Errorw("event failed; the sender should retry", zap.Int("status", status), zap.Error(err))
	}
	return nil, cehttp.NewResult(status, "%s", oneLine(err))
}

func (h *Handler) handle(ctx context.Context, e event.Event) error {
	if n := len(e.Data()); n > h.MaxBodyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, h.MaxBodyBytes)
	}
	sig, err := h.Registry.Decode(e)
	if err != nil {
		return err
	}
	switch s := sig.(type) {
	case eventing.Ignore:
		logging.FromContext(ctx).Debugw("ignored", zap.String("why", s.Reason))
		return nil
	case *eventing.PodChange:
		return h.podChange(ctx, s)
	}
	return fmt.Errorf("%w: no handler for signal %T", eventing.ErrUnknownType, sig)
}

// podChange repairs what a pod event points at. With the pod in the event (Resource mode) the
// decision to look further costs no API call; with a reference, the pod is read.
func (h *Handler) podChange(ctx context.Context, pc *eventing.PodChange) error {
	log := logging.FromContext(ctx).With(zap.String("pod", pc.Namespace+"/"+pc.Name), zap.String("op", string(pc.Op)))
	ctx = logging.WithLogger(ctx, log)
	if pc.Pod != nil {
		log.Debugw("event received", zap.String("workflow", pc.Pod.Labels[workflowmeta.LabelWorkflow]))
	} else {
		log.Debugw("event received")
	}
	if !h.Scope.NamespaceAllowed(pc.Namespace) {
		log.Debugw("ignored", zap.String("why", "namespace out of scope"))
		return nil
	}
	trigger := "pod " + string(pc.Op) + " event"
	pod, deleted := pc.Pod, pc.Op == eventing.OpDelete
	if pod == nil {
		live, err := h.Repairer.Kube.CoreV1().Pods(pc.Namespace).Get(ctx, pc.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return h.goneByName(ctx, pc, trigger)
		case err != nil:
			return fmt.Errorf("reading pod %s/%s: %w", pc.Namespace, pc.Name, err)
		}
		if _, ok := live.Labels[workflowmeta.LabelWorkflow]; !ok {
			return fmt.Errorf("%w: %s/%s has no %s label (give the ApiServerSource that selector)", ErrNotWorkflowPod, pc.Namespace, pc.Name, workflowmeta.LabelWorkflow)
		}
		pod, deleted = live, false
	}
	if err := h.Scope.Check(pod.Namespace, pod.Labels); err != nil {
		log.Debugw("ignored", zap.String("why", err.Error()))
		return nil
	}
	if ok, why := repair.Relevant(pod, deleted); !ok {
		log.Debugw("ignored", zap.String("why", why))
		return nil
	}
	t, err := repair.TargetFromPod(pod, seenOr(pc.Seen), trigger)
	if err != nil {
		return fmt.Errorf("%w: %v", eventing.ErrMalformed, err)
	}
	_, err = h.Repairer.Repair(ctx, t)
	return err
}

// goneByName handles a pod known only by name that no longer exists.
func (h *Handler) goneByName(ctx context.Context, pc *eventing.PodChange, trigger string) error {
	targets, err := h.Repairer.LocateByPodName(ctx, pc.Namespace, pc.Name, seenOr(pc.Seen), trigger)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		logging.FromContext(ctx).Debugw("ignored", zap.String("why", "pod gone and no incomplete task result matches it"))
	}
	var errs []error
	for _, t := range targets {
		if _, err := h.Repairer.Repair(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func seenOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

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

// New wires a Handler from the configuration and clients.
func New(cfg *config.Config, cs *clients.Set, log *zap.SugaredLogger) *Handler {
	sc := scope.Scope{Namespaces: cfg.Namespaces, Excluded: cfg.ExcludedNamespaces, InstanceID: cfg.InstanceID}
	r := repair.New(cs.Kube, cs.Argo, repair.Policy{Scope: sc, NodeErrorGrace: cfg.NodeErrorGrace})
	r.DryRun, r.Attempts, r.InstanceID = cfg.DryRun, cfg.ConflictRetries, cfg.InstanceID
	return &Handler{
		Registry:     families.Registry(),
		Repairer:     r,
		Scope:        sc,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Timeout:      cfg.EventTimeout,
		Log:          log,
	}
}
