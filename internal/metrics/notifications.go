// The notifications counter, in a file of its own: it registers on the Recorder's registry
// through Notifications, so the Recorder's own fields stay as metrics.go defines them.

package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The result label of notifications_total.
const (
	// NotificationSent: the sink answered 2xx.
	NotificationSent = "sent"
	// NotificationFailed: the sink refused, could not be reached or did not answer in time.
	NotificationFailed = "failed"
	// NotificationSkipped: not tried, because a send timed out moments ago (package notify).
	NotificationSkipped = "skipped"
)

// NotificationResults are every value of the result label.
var NotificationResults = []string{NotificationSent, NotificationFailed, NotificationSkipped}

// NotificationCounter counts the CloudEvents sent about repairs and warnings. Its methods are
// safe on a nil *NotificationCounter (no Recorder: nothing counted).
type NotificationCounter struct {
	vec *prometheus.CounterVec
}

// Notifications returns the counter argo_disruption_handler_notifications_total{type,result},
// registered on r's registry on the first call; later calls return the same counter, so that
// building the function twice over one Recorder does not panic on a duplicate registration.
func (r *Recorder) Notifications() *NotificationCounter {
	if r == nil {
		return nil
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "notifications_total",
		Help: "CloudEvents sent to the notification sink about repairs and warnings, by CloudEvent type and result (sent, failed, skipped)."},
		[]string{"type", "result"})
	if err := r.reg.Register(vec); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			// Only a programming error (an invalid name or label) gets here.
			panic(err)
		}
		vec = dup.ExistingCollector.(*prometheus.CounterVec)
	}
	return &NotificationCounter{vec: vec}
}

// Zero creates the series of ceType at 0 for every result, so that a rate or an alert on
// failures has a series to read before the first failure.
func (n *NotificationCounter) Zero(ceType string) {
	if n == nil {
		return
	}
	for _, res := range NotificationResults {
		n.vec.WithLabelValues(ceType, res)
	}
}

// Count counts one notification of ceType with result (one of the Notification* results).
func (n *NotificationCounter) Count(ceType, result string) {
	if n == nil {
		return
	}
	n.vec.WithLabelValues(ceType, result).Inc()
}
