package apitap

import (
	"bytes"
	"io"
	"net/http"
	"time"
)

// Tap records every request of the clients whose transport it wraps (rest.Config.Wrap, or
// wiring.Options.Transport): in the Log of the request's context (WithLog), else in its own.
type Tap struct {
	// Before, when set, runs before each request is sent: a test interferes there (a
	// concurrent write the request is then racing).
	Before func(*http.Request)
	// Log gets the calls whose context names no Log of their own.
	Log
}

// Wrap returns next with every request recorded by t.
func (t *Tap) Wrap(next http.RoundTripper) http.RoundTripper {
	return &roundTripper{next: next, tap: t}
}

type roundTripper struct {
	next http.RoundTripper
	tap  *Tap
}

func (rt *roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.tap.Before != nil {
		rt.tap.Before(r)
	}
	c := Call{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Path: r.URL.Path, Query: r.URL.RawQuery, Guarded: guarded(r), Start: time.Now()}
	resp, err := rt.next.RoundTrip(r)
	c.End = time.Now()
	if resp != nil {
		c.Status = resp.StatusCode
	}
	if err != nil {
		c.Err = err.Error()
	}
	l := &rt.tap.Log
	if own, ok := r.Context().Value(logKey{}).(*Log); ok {
		l = own
	}
	l.Add(c)
	return resp, err
}

// guarded reports whether a write's body carries a non-empty metadata.resourceVersion, read
// from a copy (client-go sets GetBody for its requests) so the request is sent untouched.
func guarded(r *http.Request) bool {
	if r.Method == http.MethodGet || r.GetBody == nil {
		return false
	}
	body, err := r.GetBody()
	if err != nil {
		return false
	}
	defer body.Close()
	b, _ := io.ReadAll(body)
	return bytes.Contains(b, []byte(`"resourceVersion":"`)) && !bytes.Contains(b, []byte(`"resourceVersion":""`))
}
