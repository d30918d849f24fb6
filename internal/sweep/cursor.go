package sweep

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"function/internal/argoworkflow"
)

// AnnotationCursor is on the sweep Lease: where the last budget-bound run stopped (Cursor JSON).
const AnnotationCursor = argoworkflow.Domain + "/sweep-cursor"

// LeaseName is the Lease holding the sweep's state, in the configured state namespace.
const LeaseName = "argo-disruption-handler-sweep"

// Lease keeps the sweep's state on the cluster, in a coordination.k8s.io Lease in the function's
// own namespace: who is sweeping now (so two pings, or two replicas, never scan at once) and
// where the last run stopped. The function scales to zero, so nothing of this can live in memory.
type Lease struct {
	Kube      kubernetes.Interface
	Namespace string
	Name      string
	// Holder names this instance (the pod name).
	Holder string
}

// ErrHeld means another sweep holds the Lease and has not expired.
var ErrHeld = fmt.Errorf("another sweep is running")

// Acquire takes the Lease for duration d and returns the cursor to resume from. It fails with
// ErrHeld while another holder's term runs; every write carries the resourceVersion read, so two
// instances racing for it cannot both win.
func (l *Lease) Acquire(ctx context.Context, d time.Duration, now time.Time) (Cursor, error) {
	leases := l.Kube.CoordinationV1().Leases(l.Namespace)
	lease, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.Name, Namespace: l.Namespace}}
		l.hold(lease, d, now)
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{FieldManager: argoworkflow.Component}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return Cursor{}, ErrHeld
			}
			return Cursor{}, fmt.Errorf("creating lease %s/%s: %w", l.Namespace, l.Name, err)
		}
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("reading lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	if held(lease, now) && *lease.Spec.HolderIdentity != l.Holder {
		return Cursor{}, fmt.Errorf("%w: lease %s/%s held by %s", ErrHeld, l.Namespace, l.Name, *lease.Spec.HolderIdentity)
	}
	var cur Cursor
	if raw := lease.Annotations[AnnotationCursor]; raw != "" {
		// An unreadable cursor (edited by hand) restarts the scan rather than blocking it.
		_ = json.Unmarshal([]byte(raw), &cur)
	}
	l.hold(lease, d, now)
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{FieldManager: argoworkflow.Component}); err != nil {
		if apierrors.IsConflict(err) {
			return Cursor{}, fmt.Errorf("%w: lease %s/%s taken meanwhile", ErrHeld, l.Namespace, l.Name)
		}
		return Cursor{}, fmt.Errorf("taking lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	return cur, nil
}

// Release stores where the run stopped (zero: the scan completed) and gives the Lease up.
func (l *Lease) Release(ctx context.Context, next Cursor) error {
	lease, err := l.ours(ctx)
	if err != nil {
		return err
	}
	if next.Zero() {
		delete(lease.Annotations, AnnotationCursor)
	} else {
		storeCursor(lease, next)
	}
	lease.Spec.HolderIdentity = nil
	lease.Spec.LeaseDurationSeconds = nil
	if _, err := l.Kube.CoordinationV1().Leases(l.Namespace).Update(ctx, lease, metav1.UpdateOptions{FieldManager: argoworkflow.Component}); err != nil {
		return fmt.Errorf("releasing lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	return nil
}

// Checkpoint stores where the run is while it holds the Lease, and renews its term: a run that
// dies mid-page leaves the cursor of its last finished workflow, and the next holder resumes
// there once the term has run out.
func (l *Lease) Checkpoint(ctx context.Context, cur Cursor, d time.Duration, now time.Time) error {
	lease, err := l.ours(ctx)
	if err != nil {
		return err
	}
	storeCursor(lease, cur)
	renew := metav1.NewMicroTime(now)
	secs := int32(d.Seconds() + 1)
	lease.Spec.RenewTime, lease.Spec.LeaseDurationSeconds = &renew, &secs
	if _, err := l.Kube.CoordinationV1().Leases(l.Namespace).Update(ctx, lease, metav1.UpdateOptions{FieldManager: argoworkflow.Component}); err != nil {
		return fmt.Errorf("storing the cursor on lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	return nil
}

// ours reads the Lease and checks that this instance holds it.
func (l *Lease) ours(ctx context.Context) (*coordinationv1.Lease, error) {
	lease, err := l.Kube.CoordinationV1().Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != l.Holder {
		return nil, fmt.Errorf("lease %s/%s no longer ours", l.Namespace, l.Name)
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	return lease, nil
}

func storeCursor(lease *coordinationv1.Lease, cur Cursor) {
	b, _ := json.Marshal(cur) // ints and strings: cannot fail
	lease.Annotations[AnnotationCursor] = string(b)
}

func (l *Lease) hold(lease *coordinationv1.Lease, d time.Duration, now time.Time) {
	holder := l.Holder
	secs := int32(d.Seconds() + 1)
	renew := metav1.NewMicroTime(now)
	lease.Spec.HolderIdentity = &holder
	lease.Spec.LeaseDurationSeconds = &secs
	lease.Spec.RenewTime = &renew
	lease.Spec.AcquireTime = &renew
}

// held reports whether the Lease has a holder whose term has not run out.
func held(lease *coordinationv1.Lease, now time.Time) bool {
	s := lease.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return false
	}
	return now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second))
}
