//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"function/internal/localcluster/cesink"
)

// apiServerSource is the source the ApiServerSource adapter names its events with here.
const apiServerSource = "https://127.0.0.1:6443"

// jsonEvent is a CloudEvent of ceType from source with JSON data, sent now, its ID unique and
// starting with idPrefix.
func jsonEvent(t *testing.T, idPrefix, source, ceType string, data []byte) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(fmt.Sprintf("%s-%d", idPrefix, time.Now().UnixNano()))
	e.SetSource(source)
	e.SetType(ceType)
	e.SetTime(time.Now())
	if err := e.SetData("application/json", json.RawMessage(data)); err != nil {
		t.Fatal(err)
	}
	return e
}

// post delivers e to url as the broker does (binary mode), with header's fields added, and
// returns the answer's status and body.
func post(t *testing.T, url string, e event.Event, header http.Header) (int, string) {
	t.Helper()
	code, body, err := cesink.Deliver(context.Background(), url, e, header)
	if err != nil {
		t.Fatalf("delivering %s %s: %v", e.Type(), e.ID(), err)
	}
	return code, body
}
