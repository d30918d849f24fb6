//go:build e2e

package e2e

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/internal/localcluster"
)

// TestSenderAuthentication runs the built function with ADH_OIDC_REQUIRED=true against the real
// kube-apiserver and sends it the same harmless event with the tokens a Knative broker, a
// stranger or an attacker could present: a TokenRequest token of a Trigger's ServiceAccount for
// the function's audience (200), the same identity for another audience (401), another
// ServiceAccount for the right audience (403), that Trigger identity's token signed with the
// cluster's own key but expired (401; the same token unexpired is accepted, so the refusal is the
// expiry's), garbage (401) and none (401).
func TestSenderAuthentication(t *testing.T) {
	const (
		ns       = "argo-disruption-handler"
		trigger  = "workflow-pods-oidc-eventing.knative.dev-trigger"
		stranger = "builder"
		audience = "serving.knative.dev/service/argo-disruption-handler/argo-disruption-handler"
	)
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: env("ADH_E2E_SWEEP_ARGO", "v3.5.10"), Nodes: 1}, 60*time.Second)
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	kube := c.Kube()
	uids := map[string]string{}
	for _, sa := range []string{trigger, stranger} {
		got, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err == nil {
			uids[sa] = string(got.UID)
		}
	}
	token := func(sa, aud string) string {
		t.Helper()
		tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: ptrInt64(600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest for %s: %v", sa, err)
		}
		return tr.Status.Token
	}
	signed := func(exp time.Time) string {
		t.Helper()
		return signServiceAccountToken(t, filepath.Join(c.Dir(), "sa.key"), ns, trigger, uids[trigger], audience, exp)
	}
	fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_OIDC_REQUIRED": "true", "ADH_OIDC_AUDIENCE": audience})

	for _, tc := range []struct {
		name   string
		header string
		status int
	}{
		{"a Trigger's token for the function's audience", "Bearer " + token(trigger, audience), 200},
		{"the Trigger's token for another audience", "Bearer " + token(trigger, "https://kubernetes.default.svc.cluster.local"), 401},
		{"another ServiceAccount's token for the function's audience", "Bearer " + token(stranger, audience), 403},
		{"the Trigger's identity signed by the cluster, unexpired (control)", "Bearer " + signed(time.Now().Add(10*time.Minute)), 200},
		{"the same, expired a minute ago", "Bearer " + signed(time.Now().Add(-time.Minute)), 401},
		{"garbage", "Bearer not.a.token", 401},
		{"no token", "", 401},
	} {
		status, body := postWithAuth(t, fn.URL, tc.header)
		t.Logf("%s: %d %s", tc.name, status, strings.TrimSpace(body))
		if status != tc.status {
			t.Errorf("%s: answered %d (%s), want %d", tc.name, status, strings.TrimSpace(body), tc.status)
		}
	}
}

// postWithAuth posts a harmless event (the delete of a pod that runs no workflow: answered 200
// without any API call once the sender is accepted) with the given Authorization header.
func postWithAuth(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	e := jsonEvent(t, "auth", apiServerSource, "dev.knative.apiserver.resource.delete",
		[]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"default","labels":{"app":"y"}}}`))
	e.SetExtension("kind", "Pod")
	header := http.Header{}
	if authorization != "" {
		header.Set("Authorization", authorization)
	}
	return post(t, url, e, header)
}

// signServiceAccountToken makes a ServiceAccount token as kube-apiserver's TokenRequest does
// (RS256, the cluster's signing key, its issuer and claims), with the expiry asked for, which
// TokenRequest would not give (at least 10 minutes ahead).
func signServiceAccountToken(t *testing.T, keyFile, ns, sa, uid, aud string, exp time.Time) string {
	t.Helper()
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatalf("%s: no PEM block", keyFile)
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	iat := exp.Add(-10 * time.Minute)
	claims := map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:" + ns + ":" + sa,
		"aud": []string{aud}, "exp": exp.Unix(), "iat": iat.Unix(), "nbf": iat.Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": uid}},
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func ptrInt64(v int64) *int64 { return &v }
