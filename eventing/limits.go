package eventing

import (
	"bytes"

	"github.com/cloudevents/sdk-go/v2/event"
)

// MaxJSONObjects bounds the JSON objects in data that a decoder unmarshals into Kubernetes API
// types: encoding/json allocates a whole struct for every object of a list however small its
// JSON, so a few MiB of `{}` would cost GiBs. The bound is far above any real pod or Event
// (docs/dev/fuzzing.md).
const MaxJSONObjects = 20000

var openBrace = []byte{'{'}

// CheckObjects refuses data holding more than MaxJSONObjects objects, before it is decoded. It
// counts every '{', inside strings too (an over-count only makes it stricter), at memory speed.
func CheckObjects(e event.Event, data []byte) error {
	if n := bytes.Count(data, openBrace); n > MaxJSONObjects {
		return Malformed(e, "data holds %d JSON objects, more than %d: refused before decoding", n, MaxJSONObjects)
	}
	return nil
}
