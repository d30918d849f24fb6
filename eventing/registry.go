package eventing

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Decoder turns one CloudEvent of its family into a Signal. An error means the event is malformed
// for its declared type (answered 400: a retry cannot fix it); Decode must never panic.
type Decoder interface {
	Decode(e event.Event) (Signal, error)
}

// DecoderFunc adapts a function to Decoder.
type DecoderFunc func(e event.Event) (Signal, error)

// Decode calls f.
func (f DecoderFunc) Decode(e event.Event) (Signal, error) { return f(e) }

// kindExtension is the CloudEvent extension in which the Knative ApiServerSource names the
// Kubernetes kind of the object ("Pod", "Event", "Node").
const kindExtension = "kind"

// ErrUnknownType is returned for an event type no family claims.
var ErrUnknownType = errors.New("unsupported CloudEvent type")

// ErrMalformed wraps every decoding error, so callers can tell bad input from other failures.
var ErrMalformed = errors.New("malformed event")

// Malformed wraps err as ErrMalformed, naming the event.
func Malformed(e event.Event, format string, args ...any) error {
	return fmt.Errorf("%w: %s (type %s, subject %q): %s", ErrMalformed, e.ID(), e.Type(), e.Subject(), fmt.Sprintf(format, args...))
}

type key struct{ ceType, kind string }

// Registry chooses the Decoder for an event by its type and, when registered so, its kind.
type Registry struct {
	decoders map[key]Decoder
	types    map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{decoders: map[key]Decoder{}, types: map[string]bool{}}
}

// Register makes d decode events of ceType. kind "" matches any kind; a non-empty kind matches
// only events whose "kind" extension equals it. Registering the same key twice panics: two
// families claiming one event is a programming error caught by the first test that builds the
// registry.
func (r *Registry) Register(ceType, kind string, d Decoder) {
	k := key{ceType, kind}
	if _, dup := r.decoders[k]; dup {
		panic(fmt.Sprintf("eventing: decoder for type %q kind %q registered twice", ceType, kind))
	}
	r.decoders[k] = d
	r.types[ceType] = true
}

// Decode picks the decoder for e and runs it. A type that is registered for other kinds only is
// acknowledged as Ignore (an ApiServerSource may watch more kinds than this function handles);
// a type nobody registered is ErrUnknownType.
func (r *Registry) Decode(e event.Event) (Signal, error) {
	kind, _ := e.Extensions()[kindExtension].(string)
	if d, ok := r.decoders[key{e.Type(), kind}]; ok && kind != "" {
		return d.Decode(e)
	}
	if d, ok := r.decoders[key{e.Type(), ""}]; ok {
		return d.Decode(e)
	}
	if r.types[e.Type()] {
		return Ignore{Reason: fmt.Sprintf("kind %q of %s is not handled", kind, e.Type())}, nil
	}
	return nil, fmt.Errorf("%w %q (supported: %s)", ErrUnknownType, e.Type(), strings.Join(r.typeNames(), ", "))
}

// typeNames lists the registered CloudEvent types, sorted (for Trigger filters and error messages).
func (r *Registry) typeNames() []string {
	out := make([]string, 0, len(r.types))
	for t := range r.types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Knows reports whether some decoder is registered for the CloudEvent type.
func (r *Registry) Knows(ceType string) bool { return r.types[ceType] }
