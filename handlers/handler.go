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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"function/config"
	"function/eventing"
	"function/eventing/pingsource"
	"function/lookup"
	"function/metrics"
	"function/record"
	"function/repair"
	"function/scope"
	"function/sender"
	"function/sweep"
	"function/workflowmeta"
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
	Scope    scope.Scope
	Finder   lookup.Finder
	// AllowedSources, when not empty, are the CloudEvent sources acted on (config.SourceAllowed).
	AllowedSources []string
	// Sender authenticates who delivered a request (Knative Eventing OIDC); nil: not checked.
	Sender *sender.Authenticator
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
type Handler struct{ o Options }

// New returns a Handler working with o.
func New(o Options) *Handler { return &Handler{o: o} }

// Stop ends the follow-ups still waiting for the controller once their runs in progress finish:
// nothing else is held that the cluster does not show.
func (h *Handler) Stop(ctx context.Context) { h.o.Repairer.StopFollowUps(ctx) }

// Handle is the function's CloudEvents entry point. It returns no response event (a reply
// would be re-injected into the broker); the error, when not nil, is an HTTP result.
func (h *Handler) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
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
		return nil, nil
	case status < 500:
		outcome = metrics.Refused
		log.Warnw("event refused", zap.Int("status", status), zap.Error(err))
	default:
		outcome = metrics.Failed
		log.Errorw("event failed; the sender should retry", zap.Int("status", status), zap.Error(err))
	}
	return nil, cehttp.NewResult(status, "%s", oneLine(err))
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
		logging.FromContext(ctx).Debugw("ignored", zap.String("why", s.Reason))
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
	if !h.o.Scope.NamespaceAllowed(pc.Namespace) {
		log.Debugw("ignored", zap.String("why", "namespace out of scope"))
		return nil
	}
	trigger := "pod " + string(pc.Op) + " event"
	pod, deleted := pc.Pod, pc.Op == eventing.OpDelete
	if pod == nil {
		live, err := h.workflowPodNamed(ctx, pc.Namespace, pc.Name)
		switch {
		case err != nil:
			return err
		case live == nil:
			return h.goneByName(ctx, pc, trigger)
		}
		pod, deleted = live, false
	}
	if why := h.podNeedsNothing(pod, deleted, pc.Pod != nil); why != "" {
		log.Debugw("ignored", zap.String("why", why))
		return nil
	}
	t, err := repair.TargetFromPod(pod, h.received(), trigger)
	if err != nil {
		return fmt.Errorf("%w: %v", eventing.ErrMalformed, err)
	}
	if repair.WaitReported(pod) {
		// Exit 0 of wait is not proof of its label flip: read the task result.
		switch done, err := h.o.Repairer.TaskResultComplete(ctx, t.Namespace, t.NodeID); {
		case err != nil:
			return err
		case done:
			log.Debugw("ignored", zap.String("why", "wait container exited 0 and its task result is complete"))
			return nil
		}
	}
	// The event carried this pod incarnation (its UID, its Workflow's UID) and the scope was
	// checked on its labels: the repair may take its four-call path, which goes on only if the
	// pod is gone when read.
	t.FromPodEvent = pc.Pod != nil
	_, err = h.o.Repairer.Repair(ctx, t)
	return err
}

// workflowPodNamed reads a pod a Reference-mode event names; nil when it is gone. A pod without
// the workflow label is refused: the source lacks its label selector.
func (h *Handler) workflowPodNamed(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod, err := h.o.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	if _, ok := pod.Labels[workflowmeta.LabelWorkflow]; !ok {
		return nil, fmt.Errorf("%w: %s/%s has no %s label (give the ApiServerSource that selector)", ErrNotWorkflowPod, namespace, name, workflowmeta.LabelWorkflow)
	}
	return pod, nil
}

// podNeedsNothing says why a pod event needs no repair, from the pod alone; "" when it may.
// fromEvent is true when the pod is the event's own copy, not a read.
func (h *Handler) podNeedsNothing(pod *corev1.Pod, deleted, fromEvent bool) string {
	if err := h.o.Scope.Check(pod.Namespace, pod.Labels); err != nil {
		return err.Error()
	}
	if ok, why := repair.Relevant(pod, deleted); !ok {
		return why
	}
	if fromEvent && forceDeleting(pod, deleted) {
		// A deletion with grace period 0 is an update and, at once, the delete: acting on the
		// update too races the API server's own removal of the pod and costs the delete more
		// calls (docs/events.md). A lost delete event is the sweep's.
		return "force-deleted: its delete event follows"
	}
	return ""
}

// deadLetter logs and counts an event the broker could not deliver and handed to its
// dead-letter sink (deploy/base/broker.yaml: the function itself). Nothing in it is acted on: it
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

// forceDeleting reports whether an update shows a pod deleted with grace period 0, not yet
// removed (no finalizer holds it: the API server removes it right after this update).
func forceDeleting(pod *corev1.Pod, deleted bool) bool {
	g := pod.DeletionGracePeriodSeconds
	return !deleted && pod.DeletionTimestamp != nil && g != nil && *g == 0 && len(pod.Finalizers) == 0
}

// nodeGone repairs every workflow pod still bound to a Node that no longer exists. No pod event
// may ever come for them: a pod held by Argo's status finalizer on a vanished Node is not
// updated until PodGC gets to it, and a re-listed watch reports nothing of what it missed. The
// delete event is only a claim: a Node of that name that exists now (a late re-delivery after a
// new machine took the name, a NodeClaim whose Node remains) proves the pods bound to the name
// live, and nothing is done.
func (h *Handler) nodeGone(ctx context.Context, g *eventing.NodeGone) error {
	log := logging.FromContext(ctx).With(zap.String("node", g.NodeName), zap.String("kind", g.Kind), zap.String("providerID", g.ProviderID))
	ctx = logging.WithLogger(ctx, log)
	switch _, err := h.o.Kube.CoreV1().Nodes().Get(ctx, g.NodeName, metav1.GetOptions{}); {
	case err == nil:
		log.Infow("node exists: the delete event is about an earlier node of that name, or its machine still runs; nothing done")
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading node %s named by a %s delete: %w", g.NodeName, g.Kind, err)
	}
	machine, err := h.machineGoing(ctx, g)
	if err != nil {
		return err
	}
	message := fmt.Sprintf("%s %s deleted", g.Kind, g.NodeName)
	if g.ProviderID != "" {
		message += " (" + g.ProviderID + ")"
	}
	pods, err := h.o.Finder.WorkflowPodsOn(ctx, g.NodeName, h.o.Scope.Namespaces)
	if err != nil {
		return err
	}
	return h.repairPods(ctx, pods, nodeWide{seen: h.received(), trigger: "node delete event", node: g.NodeName, machine: machine, reason: "NodeDeleted", message: message})
}

// machineGoing returns what the cluster confirms of a gone Node's machine. A delete's claim
// that the machine is terminated (a NodeClaim delete, a Karpenter-labelled Node) stands only
// while its NodeClaim is gone or being deleted; a Node whose finalizer was removed by hand
// leaves a NodeClaim that is neither, and its machine may still run the pods.
func (h *Handler) machineGoing(ctx context.Context, g *eventing.NodeGone) (eventing.Machine, error) {
	if g.Machine != eventing.MachineTerminated {
		return g.Machine, nil
	}
	log := logging.FromContext(ctx)
	if g.Claim == "" {
		log.Infow("machine not proven terminated: the delete names no NodeClaim; its pods are left to PodGC")
		return eventing.MachineUnknown, nil
	}
	going, node, err := h.o.Finder.ClaimGoing(ctx, g.Claim)
	switch {
	case err != nil:
		return eventing.MachineUnknown, fmt.Errorf("confirming the machine of %s %s: %w", g.Kind, g.NodeName, err)
	case !going:
		log.Infow("machine not proven terminated: its NodeClaim exists and is not being deleted; its pods are left to PodGC",
			zap.String("nodeClaim", g.Claim), zap.String("claimNode", node))
		return eventing.MachineUnknown, nil
	case node != "" && node != g.NodeName:
		log.Infow("machine not proven terminated: the NodeClaim names another Node", zap.String("nodeClaim", g.Claim), zap.String("claimNode", node))
		return eventing.MachineUnknown, nil
	}
	return eventing.MachineTerminated, nil
}

// disruption records an announced disruption on the pods it concerns and their workflows, and,
// when the machine is already gone, repairs them. No pod is deleted or evicted by us.
func (h *Handler) disruption(ctx context.Context, d *eventing.Disruption) error {
	log := logging.FromContext(ctx).With(zap.String("reason", d.Reason), zap.String("source", d.Source))
	ctx = logging.WithLogger(ctx, log)
	if d.PodName != "" && !h.o.Scope.NamespaceAllowed(d.PodNamespace) {
		return nil
	}
	pods, nodes, err := h.disruptedPods(ctx, d)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		log.Debugw("no workflow pod concerned", zap.Strings("nodes", nodes), zap.Strings("instances", d.InstanceIDs))
		return nil
	}
	sig := nodeWide{seen: h.received(), trigger: d.Source + " " + d.Reason, machine: d.Machine, reason: d.Reason, message: d.Message, announced: true}
	if d.Machine != eventing.MachineUnknown {
		// A pod whose Node is gone is repaired, its record naming the announced reason; one whose
		// Node exists gets the warning, for the repair its deletion will bring.
		sig.warning = &record.Warning{Source: d.Source, Reason: d.Reason, Message: d.Message}
		return h.repairPods(ctx, pods, sig)
	}
	var errs []error
	for i := range pods {
		if err := h.warnOrRepairEnded(ctx, &pods[i], d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// warnOrRepairEnded records the disruption on a pod that may still run. A pod the API server
// already reports ended without its wait container reporting (its node rebooted under it, or
// the disruption was announced late) can never report its outputs: it gets the repair its own
// update would have brought, with the disruption as its reason (the shipped Triggers deliver no
// pod update).
func (h *Handler) warnOrRepairEnded(ctx context.Context, pod *corev1.Pod, d *eventing.Disruption) error {
	if !repair.PodFinished(pod) || repair.WaitReported(pod) || pod.DeletionTimestamp != nil || h.o.Scope.Check(pod.Namespace, pod.Labels) != nil {
		return h.warn(ctx, pod, d.Source, d.Reason, d.Message, h.received())
	}
	t, err := repair.TargetFromPod(pod, h.received(), d.Source+" "+d.Reason)
	if err != nil {
		logging.FromContext(ctx).Debugw("pod left alone", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.Error(err))
		return nil
	}
	repair.Announce(&t, d.Reason, d.Message)
	_, err = h.o.Repairer.Repair(ctx, t)
	return err
}

// disruptedPods are the workflow pods a disruption names: its pod, or those on its Node, on its
// NodeClaim's Node, or on its instances' Nodes (nodes).
func (h *Handler) disruptedPods(ctx context.Context, d *eventing.Disruption) (pods []corev1.Pod, nodes []string, err error) {
	if d.PodName != "" {
		// A pod a disruption names that is gone, or not a workflow's, concerns no workflow.
		pod, err := h.workflowPodNamed(ctx, d.PodNamespace, d.PodName)
		switch {
		case errors.Is(err, ErrNotWorkflowPod):
			return nil, nil, nil
		case err != nil:
			return nil, nil, err
		case pod == nil:
			return nil, nil, nil
		}
		return []corev1.Pod{*pod}, nil, nil
	}
	if nodes, err = h.disruptedNodes(ctx, d); err != nil {
		return nil, nil, err
	}
	for _, n := range nodes {
		on, err := h.o.Finder.WorkflowPodsOn(ctx, n, h.o.Scope.Namespaces)
		if err != nil {
			return nil, nil, err
		}
		pods = append(pods, on...)
	}
	return pods, nodes, nil
}

// disruptedNodes are the Nodes a disruption names, found from its NodeClaim or instances.
func (h *Handler) disruptedNodes(ctx context.Context, d *eventing.Disruption) ([]string, error) {
	switch {
	case d.NodeName != "":
		return []string{d.NodeName}, nil
	case d.NodeClaimName != "":
		n, err := h.o.Finder.NodeOfClaim(ctx, d.NodeClaimName)
		if err != nil || n == "" {
			return nil, err
		}
		return []string{n}, nil
	case len(d.InstanceIDs) > 0:
		return h.o.Finder.NodesOfInstances(ctx, d.InstanceIDs)
	}
	return nil, nil
}

// warn records an announced disruption on a pod that may still run, and on its workflow.
func (h *Handler) warn(ctx context.Context, pod *corev1.Pod, source, reason, message string, seen time.Time) error {
	if h.o.Scope.Check(pod.Namespace, pod.Labels) != nil || repair.PodFinished(pod) || repair.WaitReported(pod) {
		return nil
	}
	w := record.Warning{Source: source, Reason: reason, Message: message, Node: pod.Spec.NodeName, Time: seen.UTC().Truncate(time.Second)}
	if err := h.o.Repairer.RecordWarning(ctx, pod, w); err != nil {
		return err
	}
	logging.FromContext(ctx).Infow("disruption recorded", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.String("workflow", pod.Labels[workflowmeta.LabelWorkflow]))
	return nil
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

// sweep runs the safety-net scan on a PingSource tick: one run at a time (the Lease), bounded by
// the budget, resuming where the previous tick stopped.
func (h *Handler) sweep(ctx context.Context, s *eventing.Sweep) error {
	log := logging.FromContext(ctx)
	if h.o.Sweeper == nil || h.o.SweepLease == nil {
		log.Warnw("sweep requested but not configured")
		return nil
	}
	from, err := h.o.SweepLease.Acquire(ctx, h.o.SweepBudget+sweepSlack, time.Now())
	if errors.Is(err, sweep.ErrHeld) {
		log.Infow("sweep skipped", zap.String("why", err.Error()))
		return nil
	}
	if err != nil {
		return err
	}
	term := h.o.SweepBudget + sweepSlack
	rep := h.o.Sweeper.Run(ctx, sweep.Options{From: from, Budget: h.o.SweepBudget, CheckpointEvery: sweepCheckpointEvery,
		Checkpoint: func(cur sweep.Cursor) error { return h.o.SweepLease.Checkpoint(ctx, cur, term, time.Now()) }})
	// Released even when the event's deadline has passed, so the next tick need not wait for
	// the Lease to expire.
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	relErr := h.o.SweepLease.Release(relCtx, rep.Next)
	for _, key := range rep.Skipped {
		log.Warnw("sweep skipped a workflow: runs kept stopping on it (over the budget, or the process killed)", zap.String("workflow", key),
			zap.Int("stalls", sweep.MaxStalls))
	}
	for _, f := range rep.Findings {
		if f.Stuck() {
			log.Infow("sweep found a stuck workflow", zap.String("workflow", f.Target.Namespace+"/"+f.Target.Workflow),
				zap.String("node", f.Target.NodeID), zap.String("pod", f.Target.PodName), zap.String("podState", f.PodState),
				zap.String("why", f.Why), zap.Any("actions", f.Result.Plan.Actions), zap.Bool("dryRun", f.Result.DryRun))
		}
	}
	h.o.Metrics.Sweep(rep.Duration, rep.Workflows, rep.Stuck(), rep.Next.Zero())
	log.Infow("sweep done", zap.Int("workflows", rep.Workflows), zap.Int("candidates", len(rep.Findings)), zap.Int("stuck", rep.Stuck()),
		zap.Duration("duration", rep.Duration), zap.Bool("complete", rep.Next.Zero()), zap.Int("errors", len(rep.Errors)))
	return errors.Join(append(rep.Errors, relErr)...)
}

// goneByName handles a pod known only by name that no longer exists.
func (h *Handler) goneByName(ctx context.Context, pc *eventing.PodChange, trigger string) error {
	targets, err := h.o.Repairer.LocateByPodName(ctx, pc.Namespace, pc.Name, h.received(), trigger)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		logging.FromContext(ctx).Debugw("ignored", zap.String("why", "pod gone and no incomplete task result matches it"))
	}
	var errs []error
	for _, t := range targets {
		if _, err := h.o.Repairer.Repair(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
