package localcluster

import (
	"reflect"
	"testing"
)

// TestChannelDelivery checks the harness's copy of the Subscription reconciler's rule: the
// resolved dead-letter sink, and the five retry fields only when one of them is set (format and
// the unresolved sink are not copied).
func TestChannelDelivery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		delivery map[string]any
		dls      string
		want     map[string]any
	}{
		{"none", nil, "", nil},
		{"sink only", map[string]any{"deadLetterSink": map[string]any{"ref": map[string]any{"name": "x"}}}, "http://x/",
			map[string]any{"deadLetterSink": map[string]any{"uri": "http://x/"}}},
		{"retries and sink", map[string]any{"retry": int64(6), "backoffPolicy": "exponential", "backoffDelay": "PT1S", "format": "json",
			"deadLetterSink": map[string]any{"ref": map[string]any{"name": "x"}}}, "http://x/",
			map[string]any{"retry": int64(6), "backoffPolicy": "exponential", "backoffDelay": "PT1S", "deadLetterSink": map[string]any{"uri": "http://x/"}}},
		{"timeout alone", map[string]any{"timeout": "PT5S"}, "", map[string]any{"timeout": "PT5S"}},
		{"format alone", map[string]any{"format": "json"}, "", nil},
	} {
		if got := channelDelivery(tc.delivery, tc.dls); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: channelDelivery = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestResolveDestination checks ref, uri and ref+uri destinations.
func TestResolveDestination(t *testing.T) {
	addresses := map[string]string{"fn": "http://127.0.0.1:9000/"}
	for _, tc := range []struct {
		dest    map[string]any
		want    string
		wantErr bool
	}{
		{map[string]any{"ref": map[string]any{"kind": "Service", "name": "fn"}}, "http://127.0.0.1:9000/", false},
		{map[string]any{"ref": map[string]any{"kind": "Service", "name": "fn"}, "uri": "/dls"}, "http://127.0.0.1:9000/dls", false},
		{map[string]any{"uri": "http://127.0.0.1:9001/"}, "http://127.0.0.1:9001/", false},
		{map[string]any{"ref": map[string]any{"kind": "Service", "name": "other"}}, "", true},
		{map[string]any{}, "", true},
	} {
		got, err := resolveDestination(tc.dest, addresses)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("resolveDestination(%v) = %q, %v; want %q (error %v)", tc.dest, got, err, tc.want, tc.wantErr)
		}
	}
}
