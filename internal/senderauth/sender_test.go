package senderauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"function/internal/apifake"
)

const (
	audience   = "serving.knative.dev/service/argo-disruption-handler/argo-disruption-handler"
	triggerSA  = "system:serviceaccount:argo-disruption-handler:workflow-pods-oidc-eventing.knative.dev-trigger"
	subjects   = "system:serviceaccount:argo-disruption-handler:*-oidc-eventing.knative.dev-trigger"
	strangerSA = "system:serviceaccount:default:builder"
)

var now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// jwt is a token whose claims the API server would verify; only exp is read here.
func jwt(exp time.Time) string {
	claims := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix()))
	return "eyJhbGciOiJSUzI1NiJ9." + claims + ".c2ln"
}

// apiServer answers TokenReviews as kube-apiserver does for the tokens it knows: the identity
// and the audiences of each; anything else is not authenticated. It fails every review with
// *fail while that is set.
func apiServer(known map[string]authnv1.TokenReviewStatus, calls *int, fail *error) *kubefake.Clientset {
	kube := apifake.NewCluster().Kube
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		if fail != nil && *fail != nil {
			return true, nil, *fail
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		st, ok := known[tr.Spec.Token]
		switch {
		case !ok:
			st = authnv1.TokenReviewStatus{Error: "invalid bearer token, token has expired"}
		case len(tr.Spec.Audiences) > 0 && !contains(st.Audiences, tr.Spec.Audiences[0]):
			st = authnv1.TokenReviewStatus{Error: "invalid bearer token, token audiences don't match"}
		}
		return true, &authnv1.TokenReview{Spec: tr.Spec, Status: st}, nil
	})
	return kube
}

func TestCheck(t *testing.T) {
	valid, other, foreign := jwt(now.Add(time.Hour)), jwt(now.Add(2*time.Hour)), jwt(now.Add(3*time.Hour))
	expired := jwt(now.Add(-time.Minute))
	known := map[string]authnv1.TokenReviewStatus{
		valid:   {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{audience}},
		other:   {Authenticated: true, User: authnv1.UserInfo{Username: strangerSA}, Audiences: []string{audience}},
		foreign: {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{"https://kubernetes.default.svc"}},
	}
	cases := []struct {
		name     string
		header   string
		required bool
		fail     error
		want     error // nil, ErrUnauthenticated, ErrForbidden, or any other (the API's)
		user     string
	}{
		{name: "a Trigger's token for our audience", header: "Bearer " + valid, want: nil, user: triggerSA},
		{name: "no token, not required (OIDC off)", header: "", want: nil},
		{name: "no token, required", header: "", required: true, want: ErrUnauthenticated},
		{name: "a token for another audience", header: "Bearer " + foreign, want: ErrUnauthenticated},
		{name: "a valid token of another identity", header: "Bearer " + other, want: ErrForbidden, user: strangerSA},
		{name: "an expired token", header: "Bearer " + expired, want: ErrUnauthenticated},
		{name: "garbage", header: "Bearer not-a-jwt", want: ErrUnauthenticated},
		{name: "not a bearer token", header: "Basic dXNlcjpwYXNz", want: ErrUnauthenticated},
		{name: "the API server cannot review it", header: "Bearer " + valid, fail: apierrors.NewServiceUnavailable("etcd"), want: errAPI},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			a := &Authenticator{Kube: apiServer(known, &calls, &tc.fail), Audience: audience, Subjects: []string{subjects}, Required: tc.required, Now: func() time.Time { return now }}
			user, err := a.Check(context.Background(), tc.header)
			switch {
			case tc.want == nil && err != nil, tc.want != nil && err == nil:
				t.Fatalf("err = %v, want %v", err, tc.want)
			case tc.want == errAPI && (errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrForbidden)):
				t.Fatalf("an API failure taken for a verdict: %v", err)
			case tc.want != nil && tc.want != errAPI && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if user != tc.user {
				t.Errorf("user %q, want %q", user, tc.user)
			}
		})
	}
}

var errAPI = errors.New("an API server error")

// A verified token is reused without asking again until the shorter of its expiry and a minute.
func TestVerdictReused(t *testing.T) {
	soon := jwt(now.Add(20 * time.Second))
	known := map[string]authnv1.TokenReviewStatus{soon: {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{audience}}}
	calls := 0
	clock := now
	a := &Authenticator{Kube: apiServer(known, &calls, nil), Audience: audience, Subjects: []string{subjects}, Now: func() time.Time { return clock }}
	for range 3 {
		if _, err := a.Check(context.Background(), "Bearer "+soon); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d TokenReviews for one token, want 1", calls)
	}
	clock = now.Add(21 * time.Second) // past the token's exp
	delete(known, soon)
	if _, err := a.Check(context.Background(), "Bearer "+soon); !errors.Is(err, ErrUnauthenticated) || calls != 2 {
		t.Fatalf("after expiry: %v with %d reviews, want a fresh review refusing it", err, calls)
	}
}

// TestVerdictsCost: what a sequence of deliveries costs in TokenReviews. A refused token is
// answered from memory for 30 s (a sender repeating junk costs one review), an accepted one for a
// minute; each different token costs its own review; an API server failure is no verdict.
func TestVerdictsCost(t *testing.T) {
	valid, foreign := jwt(now.Add(time.Hour)), jwt(now.Add(2*time.Hour))
	known := map[string]authnv1.TokenReviewStatus{
		valid:   {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{audience}},
		foreign: {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{"https://kubernetes.default.svc"}},
	}
	const junk, junk2 = "not-a-jwt", "eyJhbGciOiJub25lIn0.e30.x"
	type step struct {
		token   string
		at      time.Duration // the clock, from now
		apiDown bool          // every TokenReview fails with 503
		want    error         // nil, ErrUnauthenticated or errAPI
	}
	cases := []struct {
		name    string
		steps   []step
		reviews int
	}{
		{"a refused token asked twice costs one review", []step{
			{token: junk, want: ErrUnauthenticated},
			{token: junk, at: time.Second, want: ErrUnauthenticated},
		}, 1},
		{"a different junk token costs another review", []step{
			{token: junk, want: ErrUnauthenticated},
			{token: junk2, want: ErrUnauthenticated},
			{token: junk, want: ErrUnauthenticated},
			{token: junk2, want: ErrUnauthenticated},
		}, 2},
		{"a token for another audience asked twice costs one review", []step{
			{token: foreign, want: ErrUnauthenticated},
			{token: foreign, at: 29 * time.Second, want: ErrUnauthenticated},
		}, 1},
		{"a refusal is asked again after 30 s", []step{
			{token: junk, want: ErrUnauthenticated},
			{token: junk, at: 29 * time.Second, want: ErrUnauthenticated},
			{token: junk, at: 30 * time.Second, want: ErrUnauthenticated},
		}, 2},
		{"an accepted token is trusted for a minute", []step{
			{token: valid},
			{token: valid, at: 59 * time.Second},
			{token: valid, at: time.Minute},
		}, 2},
		{"an API server failure is not cached", []step{
			{token: junk, apiDown: true, want: errAPI},
			{token: junk, apiDown: true, want: errAPI},
			{token: junk, want: ErrUnauthenticated},
			{token: junk, want: ErrUnauthenticated},
		}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var fail error
			clock := now
			a := &Authenticator{Kube: apiServer(known, &calls, &fail), Audience: audience, Subjects: []string{subjects}, Now: func() time.Time { return clock }}
			for i, s := range tc.steps {
				clock, fail = now.Add(s.at), nil
				if s.apiDown {
					fail = apierrors.NewServiceUnavailable("etcd")
				}
				_, err := a.Check(context.Background(), "Bearer "+s.token)
				switch {
				case s.want == nil && err != nil, s.want != nil && err == nil:
					t.Fatalf("step %d: err = %v, want %v", i, err, s.want)
				case s.want == errAPI && errors.Is(err, ErrUnauthenticated):
					t.Fatalf("step %d: an API failure taken for a verdict: %v", i, err)
				case s.want == ErrUnauthenticated && !errors.Is(err, ErrUnauthenticated):
					t.Fatalf("step %d: err = %v, want %v", i, err, s.want)
				}
				if err != nil && !strings.Contains(err.Error(), keyOf(s.token).String()) {
					t.Errorf("step %d: %v does not name the token (%s)", i, err, keyOf(s.token))
				}
			}
			if calls != tc.reviews {
				t.Errorf("%d TokenReviews, want %d", calls, tc.reviews)
			}
		})
	}
}

// TestVerdictsBounded: a flood of distinct junk tokens keeps at most refusedSize refusals, still
// answers the latest from memory, and does not evict the accepted token of a Trigger.
func TestVerdictsBounded(t *testing.T) {
	valid := jwt(now.Add(time.Hour))
	known := map[string]authnv1.TokenReviewStatus{valid: {Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{audience}}}
	calls := 0
	a := &Authenticator{Kube: apiServer(known, &calls, nil), Audience: audience, Subjects: []string{subjects}, Now: func() time.Time { return now }}
	check := func(token string, want error) {
		t.Helper()
		if _, err := a.Check(context.Background(), "Bearer "+token); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("%s: err = %v, want %v", keyOf(token), err, want)
		}
	}
	check(valid, nil)
	const flood = refusedSize + 100
	for i := range flood {
		check(fmt.Sprintf("junk-%d", i), ErrUnauthenticated)
	}
	if n := a.refused.len(); n > refusedSize {
		t.Errorf("%d refusals kept, want at most %d", n, refusedSize)
	}
	before := calls
	check(fmt.Sprintf("junk-%d", flood-1), ErrUnauthenticated)
	check(valid, nil)
	if calls != before || before != 1+flood {
		t.Errorf("%d TokenReviews after the flood, %d more for the latest junk and the Trigger's token; want %d and 0", before, calls-before, 1+flood)
	}
}

// TestConcurrentChecksShareOneReview: deliveries that arrive together with one token (a burst
// from one Trigger) wait for the review the first started instead of each asking.
func TestConcurrentChecksShareOneReview(t *testing.T) {
	valid := jwt(now.Add(time.Hour))
	kube := apifake.NewCluster().Kube
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	kube.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		return true, &authnv1.TokenReview{Status: authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: triggerSA}, Audiences: []string{audience}}}, nil
	})
	a := &Authenticator{Kube: kube, Audience: audience, Subjects: []string{subjects}, Now: func() time.Time { return now }}
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := a.Check(context.Background(), "Bearer "+valid)
			errs <- err
		}()
	}
	<-entered
	time.Sleep(20 * time.Millisecond) // let the others reach the wait (the count holds either way)
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("%d TokenReviews for %d concurrent deliveries with one token, want 1", got, n)
	}
}
