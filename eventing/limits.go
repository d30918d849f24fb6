package eventing

import (
	"bytes"

	"github.com/cloudevents/sdk-go/v2/event"
)

// MaxJSONObjects bounds the JSON objects in data that a decoder unmarshals into Kubernetes API
// types. encoding/json allocates a whole struct for every object of a list, however small its
// JSON: `{}` (3 bytes) becomes a corev1.Container (408 bytes) or a PodCondition, so 4 MiB of
// `"containers":[{},{},…]` — under ADH_MAX_BODY_BYTES — made one request allocate 3.3 GiB (1.6 GiB
// live), measured. A workflow pod event holds ~170 objects (10 KiB, managedFields included), a
// 30 KiB pod ~300; 20,000 is far above any real pod or Event and keeps the worst case near 25 MiB
// live, ~50 MiB allocated.
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
