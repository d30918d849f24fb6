package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"function/eventing"
	"function/internal/repair"
)

// ErrUnfinished says a node-wide signal's pods were not all repaired before the event's
// deadline. It is answered 503: the sender delivers the event again, and the pods repaired so far
// are gone from the next LIST (their repair deleted them), so each delivery goes further.
var ErrUnfinished = errors.New("node-wide repair unfinished: the rest is left for the next delivery")

// nodeWideReserve is the least time left before the event's deadline for a pod's repair to be
// started: one cut by the deadline could stop between its steps.
const nodeWideReserve = 2 * time.Second

// nodeWide is what a node-wide signal says about the pods it found.
type nodeWide struct {
	seen    time.Time
	trigger string
	// node is the Node the signal named ("" when it named a machine): only pods bound to it are
	// acted on.
	node    string
	machine eventing.Machine
	// reason and message stand in for a pod's unknown reason; announced makes them win over the
	// pod's own, as a warning recorded on the pod would.
	reason, message string
	announced       bool
	// warning, when set, is recorded on the pods whose Node exists (a machine announced
	// stopping or terminated while its Node remains) instead of leaving them alone.
	warning *repair.Warning
}

// job is one pod's repair.
type job struct {
	t   repair.Target
	pod *corev1.Pod
}

// repairPods repairs the workflow pods a node-wide signal found, a bounded number at once.
// Their Node is read once per repair.HostReadValidity; on a gone Node, pods whose decision the
// listed object already gives (their delete event or the sweep takes them) cost no further call,
// and the others are repaired with what the LIST returned. Past nodeWideReserve before the
// deadline no pod is started: the event is answered ErrUnfinished.
func (h *Handler) repairPods(ctx context.Context, pods []corev1.Pod, sig nodeWide) error {
	log := logging.FromContext(ctx)
	jobs := h.nodeWideJobs(ctx, pods, sig)
	if len(jobs) == 0 {
		return nil
	}
	hosts := &hostReads{kube: h.o.Kube, now: h.o.Repairer.Now}
	work := make(chan job)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range min(max(h.o.NodeRepairWorkers, 1), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := h.repairListed(ctx, hosts, sig, j); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	deadline, bounded := ctx.Deadline()
	left := 0
	for i, j := range jobs {
		if bounded && time.Until(deadline) < nodeWideReserve {
			left = len(jobs) - i
			break
		}
		work <- j
	}
	close(work)
	wg.Wait()
	if left > 0 {
		log.Warnw("node-wide repair unfinished before the event's deadline", zap.Int("left", left), zap.Int("pods", len(jobs)), zap.String("node", sig.node))
		errs = append(errs, fmt.Errorf("%w: %d of %d pods (node %q)", ErrUnfinished, left, len(jobs), sig.node))
	}
	return errors.Join(errs...)
}

// nodeWideJobs keeps the pods the signal may concern, each with its target.
func (h *Handler) nodeWideJobs(ctx context.Context, pods []corev1.Pod, sig nodeWide) []job {
	log := logging.FromContext(ctx)
	var jobs []job
	for i := range pods {
		pod := &pods[i]
		if h.o.Scope.Check(pod.Namespace, pod.Labels) != nil {
			continue
		}
		if ok, why := repair.Relevant(pod, true); !ok {
			log.Debugw("pod left alone", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.String("why", why))
			continue
		}
		t, err := repair.TargetFromPod(pod, sig.seen, sig.trigger)
		if err != nil {
			continue
		}
		t.NodeName, t.Machine = sig.node, sig.machine
		switch {
		case sig.announced:
			repair.Announce(&t, sig.reason, sig.message)
		case t.Reason == repair.UnknownReason:
			t.Reason, t.Message = sig.reason, sig.message
		}
		jobs = append(jobs, job{t: t, pod: pod})
	}
	return jobs
}

// repairListed repairs one pod. A pod whose Node exists now is not repaired: nothing of a
// node-wide repair applies to a pod that may still report; it gets the signal's warning, if any.
func (h *Handler) repairListed(ctx context.Context, hosts *hostReads, sig nodeWide, j job) error {
	l := repair.Listed{Pod: j.pod}
	if node := j.pod.Spec.NodeName; node != "" {
		at, exists, err := hosts.gone(ctx, node)
		switch {
		case err != nil:
			logging.FromContext(ctx).Infow("node not read: the repair reads it", zap.String("pod", j.pod.Namespace+"/"+j.pod.Name), zap.Error(err))
		case exists && sig.warning != nil:
			return h.warn(ctx, j.pod, sig.warning.Source, sig.warning.Reason, sig.warning.Message, sig.seen)
		case exists:
			logging.FromContext(ctx).Debugw("pod left alone", zap.String("pod", j.pod.Namespace+"/"+j.pod.Name), zap.String("why", "its node "+node+" exists"))
			return nil
		default:
			if why := repair.ListedSkip(j.t, j.pod); why != "" {
				logging.FromContext(ctx).Debugw("pod left alone", zap.String("pod", j.pod.Namespace+"/"+j.pod.Name),
					zap.String("workflow", j.t.Namespace+"/"+j.t.Workflow), zap.String("why", why))
				if sig.warning != nil {
					// Its deletion (PodGC) will bring the repair: the warning names the cause.
					return h.warn(ctx, j.pod, sig.warning.Source, sig.warning.Reason, sig.warning.Message, sig.seen)
				}
				return nil
			}
			l.HostGoneAt = at
		}
	}
	_, err := h.o.Repairer.RepairListed(ctx, j.t, l)
	return err
}

// hostReads asks the API server whether Nodes exist, at most once per repair.HostReadValidity
// per Node for the pods of one signal; safe for concurrent use.
type hostReads struct {
	kube kubernetes.Interface
	now  func() time.Time

	mu    sync.Mutex
	reads map[string]hostRead
}

type hostRead struct {
	at     time.Time
	exists bool
}

// gone returns when the Node was read and found gone, or exists when it was found.
func (h *hostReads) gone(ctx context.Context, node string) (at time.Time, exists bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if r, ok := h.reads[node]; ok && now.Sub(r.at) < repair.HostReadValidity/2 {
		return r.at, r.exists, nil
	}
	_, err = h.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return time.Time{}, false, fmt.Errorf("reading node %s: %w", node, err)
	default:
		exists = true
	}
	if h.reads == nil {
		h.reads = map[string]hostRead{}
	}
	h.reads[node] = hostRead{at: now, exists: exists}
	return now, exists, nil
}
