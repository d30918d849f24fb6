//go:build e2e

package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTmpControlPlane(t *testing.T) {
	ctx := context.Background()
	opts := Options{CacheDir: DefaultCacheDir(), ArgoVersion: DefaultArgoVersion, Logf: t.Logf}
	c := &Cluster{opts: opts, procs: map[string]*proc{}}
	c.bins = binaries{
		etcd:      filepath.Join(opts.CacheDir, "etcd-"+EtcdVersion, "etcd"),
		apiserver: filepath.Join(opts.CacheDir, "kube-apiserver-"+KubernetesVersion, "kube-apiserver"),
		kcm:       filepath.Join(opts.CacheDir, "kube-controller-manager-"+KubernetesVersion, "kube-controller-manager"),
	}
	c.dir, _ = os.MkdirTemp("", "adh-tmp-")
	c.logDir = filepath.Join(c.dir, "logs")
	os.MkdirAll(c.logDir, 0o755)
	c.opts.KeepDir = true
	defer c.Stop()
	for _, p := range []*int{&c.ports.etcdClient, &c.ports.etcdPeer, &c.ports.apiserver, &c.ports.kcm, &c.ports.argoMetrics} {
		*p, _ = freePort()
	}
	c.token = randomToken()
	tf, _ := writeTokenFile(c.dir, c.token)
	k, pub, _ := writeServiceAccountKey(c.dir)
	t0 := time.Now()
	if err := c.startEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log("etcd", time.Since(t0))
	if err := c.startAPIServer(ctx, tf, k, pub); err != nil {
		t.Fatal(err)
	}
	t.Log("apiserver", time.Since(t0))
	if err := c.startControllerManager(ctx, k); err != nil {
		t.Fatal(err)
	}
	t.Log("kcm", time.Since(t0))
	if err := c.applyArgoCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ensureArgoNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log("crds", time.Since(t0), c.dir)
	v, err := c.kube.Discovery().ServerVersion()
	t.Log(v, err)
	time.Sleep(3 * time.Second)
	t.Log(c.PIDs())
}
