package cesink

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func podDelete(t *testing.T, ns, name string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID("id-" + name)
	e.SetSource("https://127.0.0.1:6443")
	e.SetType("dev.knative.apiserver.resource.delete")
	e.SetSubject(PodSubject(ns, name))
	e.SetExtension("name", name)
	if err := e.SetData("application/json", json.RawMessage(`{"kind":"Pod"}`)); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRecordDeliver(t *testing.T) {
	s, err := Record()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, name := range []string{"a", "b", "a"} {
		if code, body, err := Deliver(ctx, s.URL, podDelete(t, "argo", name), nil); err != nil || code != http.StatusAccepted {
			t.Fatalf("delivering %s: %d %q %v", name, code, body, err)
		}
	}
	got := s.Events(PodSubject("argo", "a"))
	if len(got) != 2 || got[0].ID() != "id-a" || string(got[0].Data()) != `{"kind":"Pod"}` {
		t.Errorf("events of pod a: %v", got)
	}
	if s.Last().IsZero() || s.Summary() == "" {
		t.Errorf("last %v, summary %q", s.Last(), s.Summary())
	}
}

func TestHandleReplay(t *testing.T) {
	var got []*Request
	s, err := Handle(func(r *Request) int {
		got = append(got, r)
		return http.StatusServiceUnavailable
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	header := http.Header{"Authorization": {"Bearer x"}}
	if code, _, err := Deliver(ctx, s.URL, podDelete(t, "argo", "p"), header); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("delivered: %d %v", code, err)
	}
	if code, _, err := Replay(ctx, s.URL, got[0]); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("replayed: %d %v", code, err)
	}
	if len(got) != 2 || got[1].Name() != "p" || got[1].Header.Get("Authorization") != "Bearer x" || string(got[1].Body) != string(got[0].Body) {
		t.Errorf("the replay differs from the delivery: %+v", got)
	}
	if len(s.Events(PodSubject("argo", "p"))) != 0 {
		t.Error("a handling sink kept events")
	}
}

func TestForward(t *testing.T) {
	cases := []struct {
		name       string
		answer     int
		body       string
		stopped    bool // the receiver is gone
		want       int
		wantAnswer string // contained in what the tap answered and kept
	}{
		{"receiver accepts", http.StatusOK, "", false, http.StatusOK, ""},
		{"receiver asks for a retry", http.StatusServiceUnavailable, "retry: API server unreachable", false, http.StatusServiceUnavailable, "API server unreachable"},
		// A broker puts a refused event's answer into the dead letter (knativeerrordata).
		{"receiver refuses", http.StatusForbidden, "source not allowed", false, http.StatusForbidden, "source not allowed"},
		{"receiver gone", 0, "", true, http.StatusBadGateway, "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			to, err := Answer(tc.answer, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			defer to.Close()
			if tc.stopped {
				to.Close()
			}
			tap, err := Forward(to.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer tap.Close()
			header := http.Header{"Authorization": {"Bearer x"}}
			code, body, err := Deliver(context.Background(), tap.URL, podDelete(t, "argo", "p"), header)
			if err != nil || code != tc.want || !strings.Contains(body, tc.wantAnswer) {
				t.Fatalf("delivered: %d %q %v, want %d with %q", code, body, err, tc.want, tc.wantAnswer)
			}
			kept := tap.Received()
			if len(kept) != 1 || kept[0].Event.ID() != "id-p" || kept[0].At.IsZero() {
				t.Fatalf("kept %+v, want the one event with its arrival", kept)
			}
			if kept[0].Status != tc.want || !strings.Contains(kept[0].Answer, tc.wantAnswer) {
				t.Errorf("kept answer %d %q, want %d with %q", kept[0].Status, kept[0].Answer, tc.want, tc.wantAnswer)
			}
			got := to.Received()
			if !tc.stopped && (len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer x" || string(got[0].Body) != string(kept[0].Body)) {
				t.Errorf("forwarded %+v, want the event as it was sent", got)
			}
			if !tc.stopped && (got[0].Status != tc.answer || got[0].Answer != tc.body) {
				t.Errorf("the receiver kept its answer as %d %q, want %d %q", got[0].Status, got[0].Answer, tc.answer, tc.body)
			}
		})
	}
}
