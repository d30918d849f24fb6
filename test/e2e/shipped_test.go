//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"function/internal/manifests"
)

// shippedStream returns the URL of a proxy to target that passes on only what the chart
// delivers to the function: a CloudEvent some shipped Trigger's filter matches (exact match on
// its attributes, as the Broker's filter does) and, for Events, one from a namespace the shipped
// Events source watches. The adapter a test starts may watch more (one adapter for several
// sources); the function must never be proven on a wider stream than users give it. The rest is
// answered 202, as the Broker's ingress answers what no Trigger wants. Binary-mode CloudEvents
// only: the ApiServerSource adapter sends no other.
func shippedStream(t *testing.T, target string) string {
	t.Helper()
	objs, err := manifests.Render(manifests.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	var filters []map[string]string
	for _, o := range objs {
		if o.GetKind() != "Trigger" {
			continue
		}
		f, _, _ := unstructured.NestedStringMap(o.Object, "spec", "filter", "attributes")
		filters = append(filters, f)
	}
	eventNamespaces := shippedEventNamespaces(t, objs)
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var passed, dropped atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := map[string]string{}
		for k, v := range r.Header {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, "ce-") && len(v) > 0 {
				attrs[lk[3:]] = v[0]
			}
		}
		if !shipped(attrs, filters, eventNamespaces) {
			dropped.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		passed.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		t.Logf("shipped stream: %d events passed to the function, %d dropped as the chart's Triggers and sources would", passed.Load(), dropped.Load())
	})
	return srv.URL
}

// shipped reports whether the shipped sources and Triggers deliver an event of these attributes.
func shipped(attrs map[string]string, filters []map[string]string, eventNamespaces []string) bool {
	if attrs["kind"] == "Event" && !slices.Contains(eventNamespaces, attrs["namespace"]) {
		return false
	}
	for _, f := range filters {
		match := true
		for k, v := range f {
			if attrs[k] != v {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// shippedEventNamespaces are the namespaces the shipped Events source watches.
func shippedEventNamespaces(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	src := manifests.Find(objs, "ApiServerSource", "karpenter-events")
	if src == nil {
		t.Fatal("the chart has no ApiServerSource karpenter-events")
	}
	exprs, _, _ := unstructured.NestedSlice(src.Object, "spec", "namespaceSelector", "matchExpressions")
	for _, e := range exprs {
		m, _ := e.(map[string]any)
		if m["key"] == "kubernetes.io/metadata.name" && m["operator"] == "In" {
			vals, _, _ := unstructured.NestedStringSlice(m, "values")
			return vals
		}
	}
	t.Fatal("the karpenter-events source selects its namespaces by kubernetes.io/metadata.name In [...]")
	return nil
}
