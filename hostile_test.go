package function

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	fhttp "knative.dev/func-go/http"

	"function/eventing"
)

// hostileServer serves a started Function through func-go's own HTTP stack (fhttp.New: the mux
// and its timeouts, the function's Handle, which reads the CloudEvent with the SDK), as the
// generated main does, against an API server that cannot be reached: none of the hostile inputs
// may need it.
func hostileServer(t *testing.T, env map[string]string) *httptest.Server {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(unreachableKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kc)
	t.Setenv("ADH_LOG_LEVEL", "error")
	for k, v := range env {
		t.Setenv(k, v)
	}
	f := New()
	if err := f.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fhttp.New(f).Handler)
	t.Cleanup(srv.Close)
	return srv
}

const (
	apiServerSource = "https://10.96.0.1:443"
	typeDelete      = "dev.knative.apiserver.resource.delete"
	typeRefDelete   = "dev.knative.apiserver.ref.delete"
	// workflowLabel makes the Resource-mode decoder parse the data (without it a pod is
	// acknowledged after a byte search).
	workflowLabel = `"labels":{"workflows.argoproj.io/workflow":"wf"}`
)

// binary returns the headers of a binary-mode CloudEvent as the broker sends it; "-name" in
// drop removes a header.
func binary(ceType, contentType string, drop ...string) http.Header {
	h := http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {apiServerSource}, "Ce-Type": {ceType},
		"Ce-Subject": {"/apis/v1/namespaces/argo/pods/p"}, "Ce-Kind": {"Pod"},
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for _, d := range drop {
		h.Del(d)
	}
	return h
}

// structured returns a structured-mode CloudEvent whose data member is the raw JSON data (or,
// with dataBase64, the bytes base64-encoded).
func structured(ceType, contentType string, data []byte, extra string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"specversion":"1.0","id":"1","source":%q,"type":%q,"kind":"Pod"`, apiServerSource, ceType)
	if contentType != "" {
		fmt.Fprintf(&b, `,"datacontenttype":%q`, contentType)
	}
	b.WriteString(extra)
	if data != nil {
		b.WriteString(`,"data":`)
		b.Write(data)
	}
	b.WriteString("}")
	return b.Bytes()
}

var ceJSON = http.Header{"Content-Type": {"application/cloudevents+json"}}

// TestHostileInput posts hostile requests through the real HTTP stack and checks each answer:
// the status the broker acts on (4xx: not retried; see handlers.StatusOf), a message that names
// the problem, no panic (a panic in Handle would answer 500), and bounded memory — the bytes
// allocated while serving one request, from runtime.ReadMemStats (TotalAlloc, an upper bound of
// the growth), must stay under 64 MiB even for the largest body accepted (4 MiB).
func TestHostileInput(t *testing.T) {
	const limit = 4 << 20 // ADH_MAX_BODY_BYTES default
	srv := hostileServer(t, nil)

	nonWorkflowPod := []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"argo","labels":{"app":"x"}}}`)
	over := []byte(`{"kind":"Pod","metadata":{"name":"p","namespace":"argo","annotations":{"x":"` + strings.Repeat("x", limit) + `"}}}`)
	nested := bytes.Repeat([]byte("["), 100_000)
	nestedPod := append([]byte(`{"metadata":{`+workflowLabel+`},"spec":`), nested...)
	nestedObjects := append([]byte(`{"metadata":{`+workflowLabel+`},"spec":`), bytes.Repeat([]byte(`{"a":`), 100_000)...)
	// Just under the limit, valid JSON all through: workflow pods without a name, so that the
	// decoder parses every byte before refusing them — or refuses them unparsed.
	fill := func(prefix, elem, suffix string, size int) []byte {
		var b bytes.Buffer
		b.WriteString(prefix)
		for i := 0; b.Len() < size-len(elem)-len(suffix); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(elem)
		}
		b.WriteString(suffix)
		return b.Bytes()
	}
	podPrefix := `{"kind":"Pod","metadata":{` + workflowLabel + `},`
	containers := fill(podPrefix+`"spec":{"containers":[`, `{"name":"c","image":"alpine","args":["sleep","3600"]}`, `]}}`, limit-100)
	emptyContainers := fill(podPrefix+`"spec":{"containers":[`, `{}`, `]}}`, limit-100)
	emptyConditions := fill(podPrefix+`"status":{"conditions":[`, `{}`, `]}}`, limit-100)
	underCap := fill(podPrefix+`"spec":{"containers":[`, `{}`, `]}}`, 3*(eventing.MaxJSONObjects-100))
	bigAnnotation := []byte(podPrefix[:len(podPrefix)-2] + `,"annotations":{"a":"` + strings.Repeat("a", limit-200) + `"}}}`)
	numbers := fill(podPrefix+`"x":[`, `1`, `]}`, limit-100)
	karpenterManagedFields := fill(`{"kind":"Event","source":{"component":"karpenter"},"metadata":{"managedFields":[`, `{}`, `]}}`, limit-100)

	cases := []struct {
		name   string
		header http.Header
		body   []byte
		status int
		msg    string // fragment of the answer's body ("" for an empty body)
	}{
		// Baselines: a valid irrelevant event in either mode.
		{"binary mode, irrelevant pod", binary(typeDelete, "application/json"), nonWorkflowPod, 200, ""},
		{"structured mode, irrelevant pod", ceJSON, structured(typeDelete, "application/json", nonWorkflowPod, ""), 200, ""},
		{"structured mode, data_base64", ceJSON, structured(typeDelete, "application/json", nil, `,"data_base64":"eyJraW5kIjoiUG9kIn0="`), 200, ""},

		// Over ADH_MAX_BODY_BYTES.
		{"binary mode, data over the limit", binary(typeDelete, "application/json"), over, 413, "event data too large"},
		{"structured mode, data over the limit", ceJSON, structured(typeDelete, "application/json", over, ""), 413, "event data too large"},

		// Deeply nested and huge JSON.
		{"100k nested arrays, no workflow label (never parsed)", binary(typeDelete, "application/json"), nested, 200, ""},
		{"100k nested arrays in a workflow pod", binary(typeDelete, "application/json"), nestedPod, 400, "exceeded max depth"},
		{"100k nested objects in a workflow pod", binary(typeDelete, "application/json"), nestedObjects, 400, "JSON objects, more than 20000: refused before decoding"},
		{"100k nested arrays, Reference mode", binary(typeRefDelete, "application/json"), nested, 400, "malformed event"},
		{"4 MiB workflow pod, 70k containers", binary(typeDelete, "application/json"), containers, 400, "JSON objects, more than 20000: refused before decoding"},
		{"4 MiB workflow pod, 1.4M empty containers", binary(typeDelete, "application/json"), emptyContainers, 400, "JSON objects, more than 20000"},
		{"4 MiB workflow pod, 1.4M empty conditions", binary(typeDelete, "application/json"), emptyConditions, 400, "JSON objects, more than 20000"},
		{"4 MiB Karpenter Event, 1.4M empty managedFields", func() http.Header {
			h := binary("dev.knative.apiserver.resource.add", "application/json")
			h.Set("Ce-Kind", "Event")
			return h
		}(), karpenterManagedFields, 400, "JSON objects, more than 20000"},
		{"workflow pod of 19,900 empty containers (decoded: the worst under the cap)", binary(typeDelete, "application/json"), underCap, 400, "pod has no metadata.name"},
		{"4 MiB annotation in a workflow pod", binary(typeDelete, "application/json"), bigAnnotation, 400, "pod has no metadata.name"},
		{"4 MiB array of numbers", binary(typeDelete, "application/json"), numbers, 400, "pod has no metadata.name"},
		{"truncated JSON", binary(typeDelete, "application/json"), []byte(podPrefix + `"spec":{"nodeName":"n`), 400, "data is not a Pod: unexpected end of JSON input"},
		{"JSON of the wrong shape", binary(typeDelete, "application/json"), []byte(`{"metadata":{"labels":{"workflows.argoproj.io/workflow":["wf"]}}}`), 400, "data is not a Pod"},
		{"empty data", binary(typeDelete, "application/json"), nil, 400, "no data"},

		// Wrong datacontenttype.
		{"binary mode, text/plain", binary(typeDelete, "text/plain"), nonWorkflowPod, 400, `datacontenttype "text/plain" is not JSON`},
		{"binary mode, application/xml", binary(typeDelete, "application/xml"), []byte(`<Pod/>`), 400, `datacontenttype "application/xml" is not JSON`},
		{"binary mode, unparsable content type", binary(typeDelete, "json;;="), nonWorkflowPod, 400, "datacontenttype: failed to parse RFC 2046 media type"},
		{"structured mode, text/plain data", ceJSON, structured(typeDelete, "text/plain", []byte(`"hello"`), ""), 400, `datacontenttype "text/plain" is not JSON`},
		{"structured mode, application/xml data", ceJSON, structured(typeDelete, "application/xml", []byte(`"<Pod/>"`), ""), 400, `datacontenttype "application/xml" is not JSON`},

		// Missing or invalid attributes: refused by the SDK before the function.
		{"binary mode, no id", binary(typeDelete, "application/json", "Ce-Id"), nonWorkflowPod, 400, "id: MUST be a non-empty string"},
		{"binary mode, no source", binary(typeDelete, "application/json", "Ce-Source"), nonWorkflowPod, 400, "source: REQUIRED"},
		{"binary mode, no type", binary(typeDelete, "application/json", "Ce-Type"), nonWorkflowPod, 400, "type: MUST be a non-empty string"},
		{"binary mode, no specversion (not a CloudEvent)", binary(typeDelete, "application/json", "Ce-Specversion"), nonWorkflowPod, 415, ""},
		{"binary mode, unknown specversion", func() http.Header {
			h := binary(typeDelete, "application/json")
			h.Set("Ce-Specversion", "9.9")
			return h
		}(), nonWorkflowPod, 415, ""},
		{"structured mode, no id", ceJSON, []byte(`{"specversion":"1.0","source":"s","type":"` + typeDelete + `","data":{}}`), 400, "id: MUST be a non-empty string"},
		{"structured mode, no specversion", ceJSON, []byte(`{"id":"1","source":"s","type":"` + typeDelete + `","data":{}}`), 400, "specversion"},
		{"plain JSON POST, not a CloudEvent", http.Header{"Content-Type": {"application/json"}}, []byte(`{"hello":1}`), 415, ""},

		// Unknown type.
		{"unknown type", binary("com.example.thing.happened", "application/json"), nonWorkflowPod, 400, "unsupported CloudEvent type"},
		{"ApiServerSource type without its operation", binary("dev.knative.apiserver.resource", "application/json"), nonWorkflowPod, 400, "unsupported CloudEvent type"},

		// Not UTF-8.
		{"non-UTF-8 bytes as data", binary(typeDelete, "application/json"), append([]byte(`{"metadata":{`+workflowLabel+`},"x":`), 0xff, 0xfe, '}'), 400, "invalid character"},
		{"non-UTF-8 pod name", binary(typeDelete, "application/json"), []byte("{\"metadata\":{\"name\":\"p\xff\",\"namespace\":\"argo\"," + workflowLabel + "}}"), 400, "pod name \"p\ufffd\""},
		{"non-UTF-8 namespace", binary(typeDelete, "application/json"), []byte("{\"metadata\":{\"name\":\"p\",\"namespace\":\"\xc3\x28\"," + workflowLabel + "}}"), 400, "namespace"},
		{"non-UTF-8 id of an irrelevant event (acknowledged: nothing to do)", func() http.Header { h := binary(typeDelete, "application/json"); h.Set("Ce-Id", "\xff\xfe"); return h }(), nonWorkflowPod, 200, ""},
		{"non-UTF-8 type", binary("dev.knative.apiserver.resource.delete\xff", "application/json"), nonWorkflowPod, 400, "unsupported CloudEvent type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, grew := post(t, srv.URL, tc.header, tc.body)
			if code != tc.status {
				t.Errorf("status %d (%q), want %d", code, short(body), tc.status)
			}
			if tc.msg == "" && tc.status != 200 && tc.status != 415 && body == "" {
				t.Errorf("a %d without any reason", code)
			}
			if tc.msg != "" && !strings.Contains(body, tc.msg) {
				t.Errorf("answer %q does not contain %q", short(body), tc.msg)
			}
			if grew > 64<<20 {
				t.Errorf("serving it allocated %d MiB (body %d KiB), want < 64 MiB", grew>>20, len(tc.body)>>10)
			}
			t.Logf("%d %q; body %d KiB, allocated %.1f MiB", code, short(body), len(tc.body)>>10, float64(grew)/(1<<20))
		})
	}
}

// TestHostileEnvelope: structured-mode bodies the CloudEvents SDK cannot read as an envelope
// are answered 400 with the SDK's reason (not retried by the broker: dead-lettered), never a
// panic, and bounded in memory like TestHostileInput. (Under func-go's CloudEvents runtime the
// SDK's receiver answered most of them 500 with an empty body, which the broker retried.) The
// SDK's own decoder refuses the same bytes: the answer is its verdict, not ours.
func TestHostileEnvelope(t *testing.T) {
	srv := hostileServer(t, nil)
	nestedData := append([]byte(`{"metadata":{`+workflowLabel+`},"spec":`), bytes.Repeat([]byte("["), 100_000)...)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		sdk    string // fragment of the SDK's own decoding error for the body
	}{
		{"100k nested arrays as data", structured(typeDelete, "application/json", nestedData, ""), 400, "ReadObject"},
		{"100k nested objects as an extension", []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","x":` + strings.Repeat(`{"a":`, 100_000) + "{}" + strings.Repeat("}", 100_000) + "}"), 400, "invalid CloudEvents value"},
		{"truncated envelope", []byte(`{"specversion":"1.0",`), 400, "ReadString"},
		{"attribute of the wrong type", []byte(`{"specversion":"1.0","id":1,"source":"s","type":"t"}`), 400, "id"},
		{"envelope is an array", []byte(`[{"specversion":"1.0"}]`), 400, ""},
		{"non-UTF-8 bytes outside strings", []byte("{\"specversion\":\"1.0\",\xff}"), 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e event.Event
			if err := e.UnmarshalJSON(tc.body); err == nil || !strings.Contains(err.Error(), tc.sdk) {
				t.Fatalf("the SDK reads the envelope (err %v), want an error with %q", short(fmt.Sprint(err)), tc.sdk)
			}
			code, body, grew := post(t, srv.URL, ceJSON, tc.body)
			if code != tc.status || !strings.Contains(body, "invalid CloudEvent") {
				t.Errorf("status %d (%q), want %d with the reason", code, short(body), tc.status)
			}
			if grew > 64<<20 {
				t.Errorf("serving it allocated %d MiB, want < 64 MiB", grew>>20)
			}
		})
	}
}

// TestHostileInputSourceNotAllowed: with ADH_ALLOWED_SOURCES set, an event from another sender
// is answered 403 through the real stack (not retried by the broker, dead-lettered), before its
// data is read — even data that would be refused otherwise; its dead letter, which keeps that
// source, is accepted (the Broker's dead-letter sink is the function).
func TestHostileInputSourceNotAllowed(t *testing.T) {
	srv := hostileServer(t, map[string]string{"ADH_ALLOWED_SOURCES": "https://kubernetes.default.svc*"})
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		status int
		msg    string
	}{
		{"API server URL not listed", binary(typeDelete, "application/json"), []byte(`{}`), 403, `CloudEvent source not allowed: "https://10.96.0.1:443"`},
		{"not listed, data over the limit", binary(typeDelete, "application/json"), bytes.Repeat([]byte("x"), 5<<20), 403, "ADH_ALLOWED_SOURCES"},
		{"a dead letter of a source not listed (logged, acted on nothing)", func() http.Header {
			h := binary(typeDelete, "application/json")
			h.Set("Ce-Knativeerrordest", "http://argo-disruption-handler.argo-disruption-handler.svc.cluster.local")
			h.Set("Ce-Knativeerrorcode", "403")
			return h
		}(), []byte(`{}`), 200, ""},
		{"listed by prefix", func() http.Header {
			h := binary(typeDelete, "application/json")
			h.Set("Ce-Source", "https://kubernetes.default.svc:443")
			return h
		}(), []byte(`{"kind":"Pod","metadata":{"name":"p","namespace":"argo"}}`), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := post(t, srv.URL, tc.header, tc.body)
			if code != tc.status || !strings.Contains(body, tc.msg) {
				t.Errorf("got %d %q, want %d %q", code, short(body), tc.status, tc.msg)
			}
		})
	}
}

// post sends one request and returns the status, the body, and the bytes the process allocated
// meanwhile (runtime.MemStats.TotalAlloc before/after, after a GC; the request body itself is
// built before).
func post(t *testing.T, url string, h http.Header, body []byte) (int, string, uint64) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer (the server died?): %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	return resp.StatusCode, string(b), after.TotalAlloc - before.TotalAlloc
}

func short(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// TestSenderTokenRequired: with ADH_OIDC_REQUIRED, a request without a bearer token, or with
// something else in Authorization, is answered 401 before its body is read; a token the API
// server cannot be asked about is 503 (the broker retries). The verdicts on real tokens are
// proven against kube-apiserver in test/e2e (TestSenderAuthentication).
func TestSenderTokenRequired(t *testing.T) {
	srv := hostileServer(t, map[string]string{"ADH_OIDC_REQUIRED": "true"})
	withAuth := func(v string) http.Header {
		h := binary(typeDelete, "application/json")
		h.Set("Authorization", v)
		return h
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		msg    string
	}{
		{"no token", binary(typeDelete, "application/json"), 401, "no bearer token"},
		{"basic credentials", withAuth("Basic dXNlcjpwYXNz"), 401, "not a bearer token"},
		{"a token, API server unreachable", withAuth("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), 503, "reviewing the sender's token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := post(t, srv.URL, tc.header, bytes.Repeat([]byte("x"), 5<<20))
			if code != tc.status || !strings.Contains(body, tc.msg) {
				t.Errorf("got %d %q, want %d %q", code, short(body), tc.status, tc.msg)
			}
		})
	}
}
