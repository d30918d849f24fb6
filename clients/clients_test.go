package clients

import (
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
	cfg, err := RESTConfig(Options{Kubeconfig: kc, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	set, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube := set.Kube.CoreV1().RESTClient().GetRateLimiter()
	argo := set.Argo.ArgoprojV1alpha1().RESTClient().GetRateLimiter()
	if kube == nil || kube != argo || kube.QPS() != 100 {
		t.Fatalf("rate limiters: kube %v, argo %v", kube, argo)
	}
}
