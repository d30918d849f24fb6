package wiring

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
`

// The three clientsets draw from one token bucket: ADH_KUBE_QPS bounds the function as a whole.
func TestOneRateLimiterForAllClients(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(ClientOptions{Kubeconfig: kc, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube := set.Kube.CoreV1().RESTClient().GetRateLimiter()
	argo := set.Argo.ArgoprojV1alpha1().RESTClient().GetRateLimiter()
	if kube == nil || kube != argo || kube.QPS() != 100 {
		t.Fatalf("rate limiters: kube %v, argo %v", kube, argo)
	}
}

// WithOwnBudget gives a copy its own token bucket and leaves the original's alone, transport
// wrappers included.
func TestWithOwnBudget(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(ClientOptions{Kubeconfig: kc, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return rt })
	shared := cfg.RateLimiter
	own := WithOwnBudget(cfg, 10, 20)
	if own.RateLimiter == nil || own.RateLimiter == shared || own.RateLimiter.QPS() != 10 || own.QPS != 10 || own.Burst != 20 {
		t.Errorf("copy: limiter %v QPS %v burst %d, want its own at 10/20", own.RateLimiter, own.QPS, own.Burst)
	}
	if cfg.RateLimiter != shared || cfg.QPS != 100 || cfg.Burst != 200 {
		t.Errorf("original changed: QPS %v burst %d", cfg.QPS, cfg.Burst)
	}
	if own.WrapTransport == nil {
		t.Error("the copy lost the transport wrapper (request counting, metrics)")
	}
}
