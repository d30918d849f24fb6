// Package sender authenticates who delivered an event: Knative Eventing's OIDC sender
// authentication. With the feature on, the broker's filter sends each Trigger's delivery with
// `Authorization: Bearer <JWT>`, a token of the Trigger's own ServiceAccount for the audience the
// Trigger names (spec.subscriber.audience). The function asks the API server about the token
// (TokenReview, with that audience) and checks the subject against the expected identities, so a
// sender that merely reaches the Service, or chooses a CloudEvent source, is not trusted.
package sender

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrUnauthenticated is a missing token where one is required, or a token the API server does not
// accept for our audience (answered 401).
var ErrUnauthenticated = errors.New("sender not authenticated")

// ErrForbidden is a valid token of an identity not allowed to send (answered 403).
var ErrForbidden = errors.New("sender not allowed")

// Authenticator verifies the Authorization header of a delivery. The zero Required accepts a
// request without any token (OIDC off in the cluster); a token presented is always verified.
type Authenticator struct {
	Kube kubernetes.Interface
	// Audience is what the token must be issued for: the audience the Triggers name.
	Audience string
	// Subjects are the identities allowed to send, each a pattern of path.Match (a "*" matches
	// any run of characters), e.g.
	// system:serviceaccount:argo-disruption-handler:*-oidc-eventing.knative.dev-trigger.
	Subjects []string
	// Required refuses a request without a token.
	Required bool
	// Now is the clock (tests set it).
	Now func() time.Time

	mu    sync.Mutex
	known map[[32]byte]verdict
}

// verdict is a token's last answer, kept until the token expires or for at most cacheFor.
type verdict struct {
	user  string
	until time.Time
}

// cacheFor bounds how long a verified token is trusted without asking again; cacheSize bounds
// the tokens kept (one per Trigger in practice).
const (
	cacheFor  = time.Minute
	cacheSize = 256
)

// Check returns nil when the request may be acted on, and the identity it came from ("" without
// a token). Errors wrap ErrUnauthenticated or ErrForbidden; any other error is the API server's
// (a TokenReview that could not be made): the caller answers 503, the broker retries.
func (a *Authenticator) Check(ctx context.Context, authorization string) (string, error) {
	if authorization == "" {
		if a.Required {
			return "", fmt.Errorf("%w: no bearer token (ADH_OIDC_REQUIRED)", ErrUnauthenticated)
		}
		return "", nil
	}
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || token == "" {
		return "", fmt.Errorf("%w: Authorization is not a bearer token", ErrUnauthenticated)
	}
	user, err := a.user(ctx, token)
	if err != nil {
		return "", err
	}
	if !a.allowed(user) {
		return user, fmt.Errorf("%w: %s is not one of ADH_OIDC_SUBJECTS", ErrForbidden, user)
	}
	return user, nil
}

func (a *Authenticator) allowed(user string) bool {
	for _, p := range a.Subjects {
		if ok, _ := path.Match(p, user); ok {
			return true
		}
	}
	return false
}

// user returns the identity the API server gives the token for our audience.
func (a *Authenticator) user(ctx context.Context, token string) (string, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	v, ok := a.known[key]
	a.mu.Unlock()
	if ok && now.Before(v.until) {
		return v.user, nil
	}
	tr, err := a.Kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("reviewing the sender's token: %w", err)
	}
	if !tr.Status.Authenticated || tr.Status.Error != "" {
		return "", fmt.Errorf("%w: token refused by the API server: %s", ErrUnauthenticated, orNone(tr.Status.Error))
	}
	if !contains(tr.Status.Audiences, a.Audience) {
		return "", fmt.Errorf("%w: token not issued for audience %q (ADH_OIDC_AUDIENCE)", ErrUnauthenticated, a.Audience)
	}
	user := tr.Status.User.Username
	until := now.Add(cacheFor)
	if exp, ok := expiry(token); ok && exp.Before(until) {
		until = exp
	}
	a.mu.Lock()
	if a.known == nil || len(a.known) >= cacheSize {
		a.known = map[[32]byte]verdict{}
	}
	a.known[key] = verdict{user: user, until: until}
	a.mu.Unlock()
	return user, nil
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// expiry reads a JWT's exp claim without verifying it: it only shortens how long the API
// server's verdict is reused.
func expiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "not authenticated"
	}
	return s
}
