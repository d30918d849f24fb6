package sender

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"function/apifake"
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
// and the audiences of each; anything else is not authenticated.
func apiServer(known map[string]authnv1.TokenReviewStatus, calls *int, fail error) *kubefake.Clientset {
	kube := apifake.NewCluster().Kube
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		if fail != nil {
			return true, nil, fail
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
			a := &Authenticator{Kube: apiServer(known, &calls, tc.fail), Audience: audience, Subjects: []string{subjects}, Required: tc.required, Now: func() time.Time { return now }}
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
