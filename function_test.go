package function

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
`

func TestLifecycle(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(unreachableKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kc)
	t.Setenv("ADH_METRICS_ADDRESS", "127.0.0.1:0")
	ctx := context.Background()
	f := New()
	if ready, _ := f.Ready(ctx); ready {
		t.Fatal("ready before Start")
	}
	rec := httptest.NewRecorder()
	f.Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before Start: %d %q, want 503", rec.Code, rec.Body.String())
	}
	if err := f.Start(ctx, nil); err != nil {
		t.Fatalf("Start with an unreachable API server: %v", err)
	}
	if ready, _ := f.Ready(ctx); !ready {
		t.Fatal("not ready after Start")
	}
	if alive, _ := f.Alive(ctx); !alive {
		t.Fatal("not alive")
	}
	if err := f.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStartRefusesBadSettings(t *testing.T) {
	t.Setenv("ADH_EVENT_TIMEOUT", "1h")
	err := New().Start(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "ADH_EVENT_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
}
