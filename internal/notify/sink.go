// Where notifications go: ADH_NOTIFICATION_SINK, else what a Knative SinkBinding injects into
// the function's container (K_SINK, K_CA_CERTS, and with Knative Eventing's authentication-oidc
// an OIDC token file for the sink's audience).

package notify

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The variables and the file a SinkBinding gives the containers of its subject
// (knative.dev/eventing pkg/apis/sources/v1/sinkbinding_lifecycle.go). It injects no
// K_SINK_AUDIENCE: the token in the file is already issued for the sink's audience.
const (
	// EnvSink is the sink's URL.
	EnvSink = "K_SINK"
	// EnvCACerts holds PEM certificates for an https sink (transport encryption).
	EnvCACerts = "K_CA_CERTS"
	// TokenFile is mounted when authentication-oidc is on and the sink has an audience (a
	// Broker does): a token of the SinkBinding's own ServiceAccount for that audience, renewed
	// by the SinkBinding controller before it expires (1 h tokens), so it is read per send.
	TokenFile = "/oidc/token"
)

// Where a sink came from (logs).
const (
	FromSetting     = "ADH_NOTIFICATION_SINK"
	FromSinkBinding = EnvSink
)

// Sink is where notifications are sent and how the function proves itself there.
type Sink struct {
	// URL is the sink's address ("": notifications off).
	URL string
	// From is FromSetting or FromSinkBinding.
	From string
	// TokenFile, when set, holds a bearer token read again for every send; a missing file
	// sends none.
	TokenFile string
	// CACerts are PEM certificates trusted for the sink besides the system's.
	CACerts string
}

// SinkFrom returns the sink: configured (ADH_NOTIFICATION_SINK) when set, else a SinkBinding's
// K_SINK, else none. The SinkBinding's token and certificates go with its own sink only: sent
// to a configured URL, a token issued for the Broker would be handed to whoever runs that URL.
func SinkFrom(configured string, getenv func(string) string) Sink {
	if configured = strings.TrimSpace(configured); configured != "" {
		return Sink{URL: configured, From: FromSetting}
	}
	if u := strings.TrimSpace(getenv(EnvSink)); u != "" {
		return Sink{URL: u, From: FromSinkBinding, TokenFile: TokenFile, CACerts: getenv(EnvCACerts)}
	}
	return Sink{}
}

// CheckURL returns why s is not an absolute http(s) URL, or nil.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%q has no host", u.Redacted())
	}
	return nil
}

// redacted is the URL without its password, for logs.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// transport is an HTTP transport like the default one that also trusts caCerts.
func transport(caCerts string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if strings.TrimSpace(caCerts) == "" {
		return t, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(caCerts)) {
		return nil, fmt.Errorf("%s holds no PEM certificate", EnvCACerts)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}
