// Command demo shows the function at work on a real control plane started on this machine: etcd,
// kube-apiserver, kube-controller-manager, the Argo workflow-controller (default v3.5.10, the
// version that never heals by itself), kwok as the kubelet, and the Knative ApiServerSource
// adapter delivering pod events to the function. It submits a workflow, evicts its pod the way a
// Karpenter drain does, prints what happened when, and tears everything down.
//
//	go run ./cmd/demo [--argo v3.5.10] [--without]
//
// The first run builds the binaries into ~/.cache/argo-disruption-handler (see README).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"function/localcluster"
	"function/localcluster/scenario"
	"function/workflowmeta"
)

func main() {
	argo := flag.String("argo", "v3.5.10", "Argo workflow-controller version: v3.5.10, v3.6.10 or v3.7.3")
	without := flag.Bool("without", false, "run the controller alone, without the function, for comparison")
	wait := flag.Duration("wait", 90*time.Second, "how long to follow the workflow after the eviction")
	flag.Parse()
	if err := run(*argo, *without, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// seconds reads the leading "+1.23s" of a timeline line.
func seconds(line string) float64 {
	var s float64
	_, _ = fmt.Sscanf(strings.TrimSpace(line), "%fs", &s)
	return s
}

func step(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func run(argo string, without bool, wait time.Duration) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "adh-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := build(ctx, argo, tmp)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{ArgoVersion: argo, Nodes: 1})
	if err != nil {
		return err
	}
	var fn *scenario.Function
	defer func() { fn.Stop(); c.Stop() }()
	c.StopOnSignal(func(os.Signal) { fn.Stop(); os.Exit(130) })
	step("control plane up in %s: etcd, kube-apiserver, kube-controller-manager, kwok, Argo %s", time.Since(start).Round(time.Millisecond), argo)

	mode := scenario.With
	if without {
		mode = scenario.Without
	} else {
		fn, err = scenario.StartFunction(ctx, bin, c.Kubeconfig(), filepath.Join(c.LogDir(), "function.log"), nil)
		if err != nil {
			return err
		}
		if err := c.StartAdapter(fn.URL, []string{"default"}, workflowmeta.LabelWorkflow); err != nil {
			return err
		}
		step("function listening on %s, fed by the ApiServerSource adapter (pods with label %s)", fn.URL, workflowmeta.LabelWorkflow)
	}
	e, err := scenario.NewEnv(c, argo, wait, nil)
	if err != nil {
		return err
	}
	step("submitting a one-step workflow with an exit handler; its pod will be evicted 11 s after it starts")
	r := e.PodDeletion(ctx, "b", mode, scenario.Spec{Namespace: "default", Node: localcluster.NodeName(0), OnExit: true}, scenario.Evict, fn)
	if r.Err != nil {
		return r.Err
	}
	printTimeline(r, fn, wait)
	return nil
}

// build builds the control plane's binaries (cached) and the function's, into dir.
func build(ctx context.Context, argo, dir string) (string, error) {
	root, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "func.yaml")); err != nil {
		return "", fmt.Errorf("run the demo from the repository root (go run ./cmd/demo)")
	}
	step("building the control plane binaries if needed (first run: ~25 min, then cached)")
	bins := exec.Command("localcluster/build-bins.sh", "etcd", "kube-apiserver", "kube-controller-manager", "kwok", "adapter", "argo-"+argo)
	bins.Stdout, bins.Stderr = os.Stdout, os.Stderr
	if err := bins.Run(); err != nil {
		return "", fmt.Errorf("building binaries: %w", err)
	}
	return scenario.BuildFunction(ctx, root, dir)
}

// printTimeline prints what happened after the eviction, the function's own steps included.
func printTimeline(r scenario.Result, fn *scenario.Function, wait time.Duration) {
	timeline := r.Timeline
	if fn != nil {
		for _, m := range []struct{ what, msg string }{
			{"event received by the function", `"event received"`},
			{"function decided the repair", `"repair plan"`},
		} {
			// The first such line after the eviction (the pod's earlier add/update events are
			// received too, and dismissed).
			for _, ts := range fn.LogTimes(m.msg, r.Workflow) {
				if !ts.Before(r.T0.Truncate(time.Millisecond)) {
					timeline = append(timeline, fmt.Sprintf("%+7.2fs  %s", ts.Sub(r.T0).Seconds(), m.what))
					break
				}
			}
		}
	}
	sort.SliceStable(timeline, func(i, j int) bool { return seconds(timeline[i]) < seconds(timeline[j]) })
	fmt.Println("\ntimeline (seconds after the eviction):")
	for _, l := range timeline {
		fmt.Println("  " + l)
	}
	if r.Moved < 0 {
		fmt.Printf("  after %s the workflow is still Running: %s\n", wait, r.Outcome)
	}
	fmt.Printf("\nresult: %s\n", r.Outcome)
}
