package handlers

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"

	"function/config"
	"function/internal/metrics"
)

// envelopeSlack is what a request may carry beyond the event data: the structured-mode
// envelope and its attributes. The data itself is bounded by MaxBodyBytes in Handle.
const envelopeSlack = 64 << 10

// ServeHTTP is the function's HTTP entry: it authenticates the sender, reads the CloudEvent
// (binary or structured mode) and hands it to Handle; the answer is the status Handle's result
// maps to, with its reason as a short text body (an empty body on success: the broker turns a
// body that is not a CloudEvent into a 502).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		http.Error(w, "POST a CloudEvent", http.StatusMethodNotAllowed)
		return
	}
	if err := h.admit(r); err != nil {
		h.refuse(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, int64(h.o.MaxBodyBytes)+envelopeSlack)
	e, err := readEvent(r)
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	res := h.Handle(ctx, *e)
	status, msg := http.StatusOK, ""
	var result *cehttp.Result
	if res != nil && protocol.ResultAs(res, &result) {
		status, msg = result.StatusCode, fmt.Sprintf(result.Format, result.Args...)
	}
	if status == http.StatusOK {
		w.WriteHeader(status)
		return
	}
	http.Error(w, msg, status)
}

// admit checks who sent the request and, for a binary-mode event, its source, before the body
// is read.
func (h *Handler) admit(r *http.Request) error {
	if h.o.Sender != nil {
		user, err := h.o.Sender.Check(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			return err
		}
		if user != "" {
			h.o.Log.Debugw("sender authenticated", zap.String("sender", user), zap.String("ceID", r.Header.Get("Ce-Id")))
		}
	}
	// A dead letter keeps the source of the event that failed (one refused for its source, say):
	// Handle logs and counts it and acts on nothing, so it is not refused here.
	if r.Header.Get("Ce-Knativeerrordest") != "" {
		return nil
	}
	if src := r.Header.Get("Ce-Source"); src != "" && !config.SourceAllowed(src, h.o.AllowedSources) {
		return fmt.Errorf("%w: %q (ADH_ALLOWED_SOURCES)", ErrSourceNotAllowed, src)
	}
	return nil
}

// readEvent reads the CloudEvent of a request, binary or structured mode.
func readEvent(r *http.Request) (*event.Event, error) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, fmt.Errorf("%w: the request is over %d bytes", ErrTooLarge, tooBig.Limit)
	case errors.Is(err, binding.ErrUnknownEncoding):
		// Not a CloudEvent at all (no specversion, or one no SDK knows).
		return nil, errNotCloudEvent
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errBadEnvelope, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEnvelope, err)
	}
	return e, nil
}

var (
	errNotCloudEvent = errors.New("not a CloudEvent")
	errBadEnvelope   = errors.New("invalid CloudEvent")
)

// refuse answers a request that never became an event for Handle, counting it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusOf(err)
	h.o.Metrics.Event(h.metricType(r.Header.Get("Ce-Type")), outcomeOf(status), 0)
	log := h.o.Log.With(zap.String("ceID", r.Header.Get("Ce-Id")), zap.String("ceType", r.Header.Get("Ce-Type")), zap.String("remote", r.RemoteAddr))
	switch {
	case status >= 500:
		log.Errorw("request failed; the sender should retry", zap.Int("status", status), zap.Error(err))
	default:
		log.Warnw("request refused", zap.Int("status", status), zap.Error(err))
	}
	if errors.Is(err, errNotCloudEvent) {
		w.WriteHeader(status)
		return
	}
	http.Error(w, oneLine(err), status)
}

func outcomeOf(status int) string {
	switch {
	case status < 300:
		return metrics.Handled
	case status < 500:
		return metrics.Refused
	}
	return metrics.Failed
}
