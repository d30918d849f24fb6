package wiring

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
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

// A REST config a command line resolved (kubectl's flags) is used as given, copied: only the rate,
// the timeout and the user agent are the function's.
func TestRESTConfigFromBase(t *testing.T) {
	base := &rest.Config{Host: "https://10.0.0.1:6443", BearerToken: "t", Impersonate: rest.ImpersonationConfig{UserName: "alice"}, Timeout: time.Minute}
	t.Setenv("KUBECONFIG", "/nonexistent/kubeconfig") // not read
	cfg, err := RESTConfig(ClientOptions{Base: base, Kubeconfig: "/nonexistent/either", QPS: 50, Burst: 60, Timeout: 5 * time.Second, UserAgent: "adh-test"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg == base || cfg.Host != base.Host || cfg.BearerToken != "t" || cfg.Impersonate.UserName != "alice" {
		t.Errorf("config %+v, want a copy of the base", cfg)
	}
	if cfg.QPS != 50 || cfg.Burst != 60 || cfg.RateLimiter == nil || cfg.Timeout != 5*time.Second || cfg.UserAgent != "adh-test" {
		t.Errorf("QPS %v burst %d limiter %v timeout %s agent %q", cfg.QPS, cfg.Burst, cfg.RateLimiter, cfg.Timeout, cfg.UserAgent)
	}
	if base.Timeout != time.Minute || base.QPS != 0 || base.RateLimiter != nil || base.UserAgent != "" {
		t.Errorf("base changed: %+v", base)
	}
}
