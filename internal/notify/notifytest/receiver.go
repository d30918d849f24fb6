// Package notifytest is a notification sink for the tests of every package: the CloudEvents
// SDK's own HTTP receiver on an httptest server, answering as the Broker's ingress does.
package notifytest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/internal/metrics"
)

// Received is one event the sink accepted, with the Authorization header it came with.
type Received struct {
	Event         event.Event
	Authorization string
}

// Receiver is a CloudEvents sink at URL; it is closed when the test ends.
type Receiver struct {
	URL string

	mu     sync.Mutex
	status int
	got    []Received
}

// NewReceiver starts a sink answering 202 Accepted, as the Broker's ingress does.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{status: http.StatusAccepted}
	p, err := cehttp.New()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := client.NewHTTPReceiveHandler(context.Background(), p, r.receive)
	if err != nil {
		tb.Fatal(err)
	}
	// The SDK hands the receiving function the request's context: RequestData carries its headers.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.ServeHTTP(w, req.WithContext(cehttp.WithRequestDataAtContext(req.Context(), req)))
	}))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// AnswerWith makes the sink answer status to every event from now on (still keeping them).
func (r *Receiver) AnswerWith(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = status
}

func (r *Receiver) receive(ctx context.Context, e event.Event) protocol.Result {
	got := Received{Event: e}
	if rd := cehttp.RequestDataFromContext(ctx); rd != nil {
		got.Authorization = rd.Header.Get("Authorization")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, got)
	return cehttp.NewResult(r.status, "")
}

// Received returns the events received so far, in order.
func (r *Receiver) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.got...)
}

// Hanging starts a sink that never answers (until the client gives up): a sink that swallows
// requests. Its URL is returned.
func Hanging(tb testing.TB) string {
	tb.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Read to the end: only then does the server notice the client hanging up.
		_, _ = io.Copy(io.Discard, req.Body)
		select {
		case <-req.Context().Done():
		case <-done:
		}
	}))
	tb.Cleanup(srv.Close)
	tb.Cleanup(func() { close(done) }) // runs first: Close waits for the handlers
	return srv.URL
}

// Unreachable is the URL of a port nothing listens on.
func Unreachable(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// Counted reads argo_disruption_handler_notifications_total{type,result} from rec's /metrics.
func Counted(tb testing.TB, rec *metrics.Recorder, ceType, result string) string {
	tb.Helper()
	w := httptest.NewRecorder()
	rec.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	prefix := `argo_disruption_handler_notifications_total{result="` + result + `",type="` + ceType + `"} `
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "absent"
}
