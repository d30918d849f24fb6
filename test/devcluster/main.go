// Command devcluster starts the local e2e control plane (etcd,
// kube-apiserver, kube-controller-manager, kwok, Argo workflow-controller,
// optionally the ApiServerSource adapter), prints how to use it and tears
// everything down on Ctrl-C / SIGTERM.
//
//	go run ./test/devcluster --argo v3.5.10
//
// Binaries must have been built with internal/localcluster/build-bins.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"function/internal/localcluster"
)

type envFlag map[string]string

func (e envFlag) String() string { return fmt.Sprint(map[string]string(e)) }
func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[k] = v
	return nil
}

func main() {
	argoEnv := envFlag{}
	var (
		argo      = flag.String("argo", localcluster.DefaultArgoVersion, "workflow-controller version: "+strings.Join(localcluster.ArgoVersions, ", "))
		nodes     = flag.Int("nodes", 1, "number of kwok Nodes (kwok-node-0..N-1)")
		noArgo    = flag.Bool("no-argo", false, "do not start the workflow-controller")
		noKCM     = flag.Bool("no-kcm", false, "do not start kube-controller-manager")
		keep      = flag.Bool("keep", false, "keep the temporary directory (logs, certs) after exit")
		finalizer = flag.Bool("finalizer", false, "set ARGO_POD_STATUS_CAPTURE_FINALIZER=true on the controller")
		sink      = flag.String("adapter-sink", "", "if set, also run the ApiServerSource adapter sending pod events to this URL")
		adNS      = flag.String("adapter-namespaces", "argo", "comma-separated namespaces the adapter watches (empty = all)")
		adSel     = flag.String("adapter-selector", "workflows.argoproj.io/workflow", "label selector of the adapter's pods")
		cacheDir  = flag.String("cache", localcluster.DefaultCacheDir(), "directory with the binaries built by internal/localcluster/build-bins.sh")
		knative   = flag.String("knative-serving", "", "if set, install Knative Serving's CRDs, mark the Knative Services of this namespace Ready as its controller would, and serve a local OCI registry (for func deploy; docs/dev/func-deploy.md)")
	)
	flag.Var(argoEnv, "argo-env", "extra KEY=VALUE environment for the workflow-controller (repeatable)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *finalizer {
		argoEnv["ARGO_POD_STATUS_CAPTURE_FINALIZER"] = "true"
	}

	// A signal during Start cancels it; Start then stops what it started.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	c, err := localcluster.Start(ctx, localcluster.Options{
		ArgoVersion:         *argo,
		ArgoEnv:             argoEnv,
		NoArgo:              *noArgo,
		NoControllerManager: *noKCM,
		Nodes:               *nodes,
		CacheDir:            *cacheDir,
		KeepDir:             *keep,
		Logf:                log.Printf,
	})
	if err != nil {
		log.Fatalf("start: %v", err)
	}
	defer c.Stop()

	if *sink != "" {
		if err := startAdapter(c, *sink, *adNS, *adSel); err != nil {
			c.Stop()
			log.Fatalf("adapter: %v", err)
		}
	}
	if *knative != "" {
		addr, stopRegistry, err := startKnativeServing(ctx, c, *knative)
		if err != nil {
			c.Stop()
			log.Fatalf("knative serving: %v", err)
		}
		defer stopRegistry()
		fmt.Printf("\nregistry:   %s (plain HTTP; func deploy --registry=%s/adh)\n", addr, addr)
	}
	printHowToUse(c)

	<-ctx.Done()
	log.Printf("stopping...")
	start := time.Now()
	c.Stop()
	log.Printf("stopped in %.1fs", time.Since(start).Seconds())
}

// startAdapter runs the ApiServerSource adapter, sending the events of the selected pods of
// namespaces (comma-separated, "" for all) to sink.
func startAdapter(c *localcluster.Cluster, sink, namespaces, selector string) error {
	var ns []string
	if namespaces != "" {
		ns = strings.Split(namespaces, ",")
	}
	if err := c.StartAdapter(sink, ns, selector); err != nil {
		return err
	}
	log.Printf("adapter: pods in %v (selector %q) -> %s", ns, selector, sink)
	return nil
}

// startKnativeServing installs Knative Serving's CRDs, marks the Knative Services of namespace
// Ready until ctx ends, and starts the local OCI registry (its address is returned).
func startKnativeServing(ctx context.Context, c *localcluster.Cluster, namespace string) (string, func(), error) {
	if err := c.InstallKnativeServingCRDs(ctx); err != nil {
		return "", nil, err
	}
	go c.ServeKnativeServices(ctx, namespace, log.Printf)
	addr, stop, err := localcluster.StartRegistry()
	if err != nil {
		return "", nil, err
	}
	log.Printf("knative serving: CRDs installed, Services of %s marked Ready by devcluster", namespace)
	return addr, stop, nil
}

// printHowToUse prints where the cluster's kubeconfig, logs and processes are.
func printHowToUse(c *localcluster.Cluster) {
	fmt.Printf("\nkubeconfig: %s\nlogs:       %s\npids:       %v\n", c.Kubeconfig(), c.LogDir(), c.PIDs())
	if k := c.KubectlPath(); k != "" {
		fmt.Printf("kubectl:    %s\n", k)
	}
	fmt.Printf("\nexport KUBECONFIG=%s\n\nPress Ctrl-C to stop.\n", c.Kubeconfig())
}
