// Package podresource decodes Knative ApiServerSource events in Resource mode for Pods
// (dev.knative.apiserver.resource.{add,update,delete}): the data is the whole Pod as the watch
// delivered it, managedFields included; a delete carries the pod's last state.
package podresource

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"function/eventing"
	"function/internal/argoworkflow"
)

// workflowLabelTail is the end of the quoted label key as it appears in the JSON of a workflow
// pod. encoding/json (used by the adapter) never escapes '/', so a pod whose bytes lack it cannot
// carry the label: the common case (any other pod) is answered without decoding 30 KiB of JSON.
// The search starts at 'j', a byte rare in Kubernetes JSON, so bytes.Index scans at memory speed;
// the key's first byte '"' would stop the scan every few bytes (docs/events.md).
var workflowLabelTail = []byte(argoworkflow.LabelWorkflow[len("workflows.argopro"):] + `"`)

// Decoder decodes Pod objects in Resource mode.
type Decoder struct{}

// Register adds the decoder for the three Resource-mode types, kind Pod.
func Register(r *eventing.Registry) {
	for _, t := range []string{eventing.ResourceAdd, eventing.ResourceUpdate, eventing.ResourceDelete} {
		r.Register(t, "Pod", Decoder{})
	}
}

// Decode implements eventing.Decoder.
func (Decoder) Decode(e event.Event) (eventing.Signal, error) {
	op, data, err := eventing.PodOp(e)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(data, workflowLabelTail) {
		return eventing.Ignore{Reason: "pod without the " + argoworkflow.LabelWorkflow + " label"}, nil
	}
	if err := eventing.CheckObjects(e, data); err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(data, &pod); err != nil {
		return nil, eventing.Malformed(e, "data is not a Pod: %v", err)
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, eventing.Malformed(e, "data is a %q, not a Pod", pod.Kind)
	}
	if pod.Name == "" || pod.Namespace == "" {
		return nil, eventing.Malformed(e, "pod has no metadata.name or metadata.namespace")
	}
	// As the API server validates them: a name no pod can have (bytes that were not UTF-8 read as
	// U+FFFD, a path) is refused here rather than sent to the API server.
	if msgs := validation.IsDNS1123Subdomain(pod.Name); len(msgs) > 0 {
		return nil, eventing.Malformed(e, "pod name %q: %s", pod.Name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(pod.Namespace); len(msgs) > 0 {
		return nil, eventing.Malformed(e, "namespace %q: %s", pod.Namespace, strings.Join(msgs, "; "))
	}
	if _, ok := pod.Labels[argoworkflow.LabelWorkflow]; !ok {
		// The key appeared elsewhere (an annotation value, an env var): not a workflow pod.
		return eventing.Ignore{Reason: "pod without the " + argoworkflow.LabelWorkflow + " label"}, nil
	}
	return &eventing.PodChange{Op: op, Namespace: pod.Namespace, Name: pod.Name, Pod: &pod, Seen: e.Time()}, nil
}
