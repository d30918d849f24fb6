package eventing

import (
	"mime"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
)

// CloudEvent types of the Knative ApiServerSource (knative.dev/eventing pkg/adapter/apiserver).
const (
	ResourceAdd    = "dev.knative.apiserver.resource.add"
	ResourceUpdate = "dev.knative.apiserver.resource.update"
	ResourceDelete = "dev.knative.apiserver.resource.delete"
	RefAdd         = "dev.knative.apiserver.ref.add"
	RefUpdate      = "dev.knative.apiserver.ref.update"
	RefDelete      = "dev.knative.apiserver.ref.delete"
)

// opOf returns the operation named by the last segment of an ApiServerSource event type.
func opOf(ceType string) (Op, bool) {
	switch ceType[strings.LastIndexByte(ceType, '.')+1:] {
	case "add":
		return OpAdd, true
	case "update":
		return OpUpdate, true
	case "delete":
		return OpDelete, true
	}
	return "", false
}

// PodOp is the operation and JSON data of an ApiServerSource event about a pod.
func PodOp(e event.Event) (Op, []byte, error) {
	op, ok := opOf(e.Type())
	if !ok {
		return "", nil, Malformed(e, "type has no add/update/delete operation")
	}
	data, err := JSONData(e)
	return op, data, err
}

// JSONData returns the event's data if its content type is JSON (or unset, which the CloudEvents
// spec reads as JSON), and a Malformed error otherwise or when there is no data.
func JSONData(e event.Event) ([]byte, error) {
	if ct := e.DataContentType(); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "text/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, Malformed(e, "datacontenttype %q is not JSON", ct)
		}
	}
	data := e.Data()
	if len(data) == 0 {
		return nil, Malformed(e, "no data")
	}
	return data, nil
}
