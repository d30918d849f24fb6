// Package senderauth authenticates who delivered an event: Knative Eventing's OIDC sender
// authentication. With the feature on, the broker's filter sends each Trigger's delivery with
// `Authorization: Bearer <JWT>`, a token of the Trigger's own ServiceAccount for the audience the
// Trigger names (spec.subscriber.audience). The function asks the API server about the token
// (TokenReview, with that audience) and checks the subject against the expected identities, so a
// sender that merely reaches the Service, or chooses a CloudEvent source, is not trusted.
package senderauth

import (
	"context"
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
	// Kube makes the TokenReviews. Give it a client with a rate budget of its own (wiring does),
	// so that a flood of junk tokens waits on that budget, not on the repairs'.
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

	mu sync.Mutex
	// Accepted and refused tokens are kept apart, so that junk cannot evict the Triggers' tokens.
	accepted, refused verdicts
	// reviewing holds the TokenReview in flight for a token: concurrent deliveries with the same
	// token wait for it instead of each asking.
	reviewing map[tokenKey]*inflight
}

// inflight is one TokenReview under way; done is closed once v and err are set.
type inflight struct {
	done chan struct{}
	v    verdict
	err  error
}

// How long a verdict is reused without asking again, and how many are kept. An accepted token is
// trusted for at most acceptedFor (never past its exp), one per Trigger in practice; a refused
// one is answered from memory for refusedFor, so that a sender repeating a junk token costs one
// TokenReview, and a token refused by a passing API server fault is asked again soon.
const (
	acceptedFor  = time.Minute
	acceptedSize = 256
	refusedFor   = 30 * time.Second
	refusedSize  = 1024
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

// user returns the identity the API server gives the token for our audience: from a verdict
// still valid, from the review another request has in flight, or from a TokenReview of its own.
func (a *Authenticator) user(ctx context.Context, token string) (string, error) {
	key, now := keyOf(token), a.now()
	v, r, first := a.lookup(key, now)
	switch {
	case r == nil:
		return v.result(key)
	case first:
		r.v, r.err = a.review(ctx, key, token, now)
		a.settle(key, r, now)
	default:
		select {
		case <-r.done:
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the review of the sender's token %s: %w", key, ctx.Err())
		}
	}
	if r.err != nil {
		return "", r.err
	}
	return r.v.result(key)
}

// lookup returns the verdict on key still valid at now (r nil), else the review in flight for
// it; first says that review was just registered and the caller must make it.
func (a *Authenticator) lookup(key tokenKey, now time.Time) (v verdict, r *inflight, first bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v, ok := a.accepted.get(key, now); ok {
		return v, nil, false
	}
	if v, ok := a.refused.get(key, now); ok {
		return v, nil, false
	}
	if r, ok := a.reviewing[key]; ok {
		return verdict{}, r, false
	}
	if a.reviewing == nil {
		a.reviewing = map[tokenKey]*inflight{}
	}
	r = &inflight{done: make(chan struct{})}
	a.reviewing[key] = r
	return verdict{}, r, true
}

// settle keeps the verdict of the review r made and releases the requests waiting for it. An
// API server failure is no verdict: the next request asks again.
func (a *Authenticator) settle(key tokenKey, r *inflight, now time.Time) {
	a.mu.Lock()
	delete(a.reviewing, key)
	switch {
	case r.err != nil:
	case r.v.refusal != "":
		a.refused.put(key, r.v, now, refusedSize)
	default:
		a.accepted.put(key, r.v, now, acceptedSize)
	}
	a.mu.Unlock()
	close(r.done)
}

// review asks the API server about token. The error is only for a review that could not be made.
func (a *Authenticator) review(ctx context.Context, key tokenKey, token string, now time.Time) (verdict, error) {
	tr, err := a.Kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, fmt.Errorf("reviewing the sender's token %s: %w", key, err)
	}
	if !tr.Status.Authenticated || tr.Status.Error != "" {
		return verdict{refusal: "refused by the API server: " + orNone(tr.Status.Error), until: now.Add(refusedFor)}, nil
	}
	if !contains(tr.Status.Audiences, a.Audience) {
		return verdict{refusal: fmt.Sprintf("not issued for audience %q (ADH_OIDC_AUDIENCE)", a.Audience), until: now.Add(refusedFor)}, nil
	}
	until := now.Add(acceptedFor)
	if exp, ok := expiry(token); ok && exp.Before(until) {
		until = exp
	}
	return verdict{user: tr.Status.User.Username, until: until}, nil
}

// result is the verdict as Check's answer.
func (v verdict) result(key tokenKey) (string, error) {
	if v.refusal != "" {
		return "", fmt.Errorf("%w: token %s %s", ErrUnauthenticated, key, v.refusal)
	}
	return v.user, nil
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
