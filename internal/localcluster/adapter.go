package localcluster

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// AdapterVersion is the knative.dev/eventing version of the adapter build.
const AdapterVersion = "v0.50.0"

type adapterGVR struct {
	Group    string `json:"Group"`
	Version  string `json:"Version"`
	Resource string `json:"Resource"`
}

type adapterResource struct {
	GVR      adapterGVR `json:"gvr"`
	Selector string     `json:"selector,omitempty"`
}

type adapterSourceConfig struct {
	Namespaces    []string          `json:"namespaces"`
	AllNamespaces bool              `json:"allNamespaces"`
	Resources     []adapterResource `json:"resources"`
	Mode          string            `json:"mode"`
}

// StartAdapter runs the Knative ApiServerSource receive adapter outside the
// cluster: it watches pods (Resource mode, whole objects as event data) in
// namespaces (empty = all namespaces) matching labelSelector (may be empty)
// and POSTs CloudEvents (dev.knative.apiserver.resource.add/update/delete) to
// sinkURL. A second call replaces the running adapter. Its pprof server is
// moved to a free loopback port (PROFILING_PORT) and its :8080 health-probe
// server is not started (see internal/localcluster/tools/adapter/main.go).
func (c *Cluster) StartAdapter(sinkURL string, namespaces []string, labelSelector string) error {
	return c.StartAdapterFor(sinkURL, namespaces, []AdapterResource{{Version: "v1", Resource: "pods", Selector: labelSelector}})
}

// AdapterResource is one kind the adapter watches (an ApiServerSource spec.resources entry).
type AdapterResource struct {
	Group, Version, Resource string
	// Selector is a label selector ("" for all).
	Selector string
}

// StartAdapterFor is StartAdapter for any resources: namespaced ones are watched in namespaces
// (empty = all), cluster-scoped ones (nodes) cluster-wide, as the adapter does in a cluster.
func (c *Cluster) StartAdapterFor(sinkURL string, namespaces []string, resources []AdapterResource) error {
	c.StopAdapter()
	return c.startAdapterProc("adapter", sinkURL, namespaces, resources)
}

// AdapterSource is one ApiServerSource as its reconciler configures the adapter it runs: a
// name, the namespaces it watches (empty: all) and its resources.
type AdapterSource struct {
	Name       string
	Namespaces []string
	Resources  []AdapterResource
}

// StartAdapterSources runs one adapter per source, as Knative runs one per ApiServerSource, all
// posting to sinkURL. It replaces any running adapter.
func (c *Cluster) StartAdapterSources(sinkURL string, sources []AdapterSource) error {
	c.StopAdapter()
	for _, s := range sources {
		if err := c.startAdapterProc("adapter-"+s.Name, sinkURL, s.Namespaces, s.Resources); err != nil {
			c.StopAdapter()
			return fmt.Errorf("adapter of source %s: %w", s.Name, err)
		}
		c.mu.Lock()
		c.adapters = append(c.adapters, "adapter-"+s.Name)
		c.mu.Unlock()
	}
	return nil
}

func (c *Cluster) startAdapterProc(name, sinkURL string, namespaces []string, resources []AdapterResource) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("cluster stopped")
	}
	bin := filepath.Join(c.opts.CacheDir, "adapter-"+AdapterVersion, "apiserver_receive_adapter")
	if err := checkBin(bin, "adapter"); err != nil {
		return err
	}
	cfg := adapterSourceConfig{
		Namespaces:    namespaces,
		AllNamespaces: len(namespaces) == 0,
		Mode:          "Resource",
	}
	for _, r := range resources {
		cfg.Resources = append(cfg.Resources, adapterResource{
			GVR: adapterGVR{Group: r.Group, Version: r.Version, Resource: r.Resource}, Selector: r.Selector})
	}
	if cfg.Namespaces == nil {
		cfg.Namespaces = []string{}
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	pprofPort, err := FreePort()
	if err != nil {
		return err
	}
	env := []string{
		"KUBECONFIG=" + c.kubeconfig,
		"K_SINK=" + sinkURL,
		"NAME=e2e-apiserversource" + strings.TrimPrefix(name, "adapter"),
		"NAMESPACE=" + ArgoNamespace,
		"SYSTEM_NAMESPACE=knative-eventing",
		"K_SOURCE_CONFIG=" + string(js),
		"PROFILING_PORT=" + strconv.Itoa(pprofPort),
		"K_LOGGING_CONFIG={}",
		"K_OBSERVABILITY_CONFIG={}",
	}
	p, err := startProc(c.logDir, name, bin, []string{"--disable-ha"}, env, 5*time.Second)
	if err != nil {
		return err
	}
	c.addProc(p)
	// No health endpoint (disabled on purpose): give it a moment and make
	// sure it did not die on its configuration.
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(500 * time.Millisecond):
	}
	return nil
}

// StopAdapter stops the adapters (no-op if none runs).
func (c *Cluster) StopAdapter() {
	c.stopProc("adapter")
	c.mu.Lock()
	names := c.adapters
	c.adapters = nil
	c.mu.Unlock()
	for _, n := range names {
		c.stopProc(n)
	}
}
