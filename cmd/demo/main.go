// Command demo shows the function at work on a real control plane started on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, the Argo workflow-controller (default
// v3.5.10, the version that never heals by itself), kwok as the kubelet, Karpenter (its KWOK
// provider) launching the nodes, and the Knative ApiServerSource adapter sending pod, Event,
// Node and NodeClaim events through Knative Eventing's Broker data plane (the Broker and Triggers
// of the chart) to the function. It submits a workflow, lets Karpenter drift the node
// under its running step, prints what happened when (Karpenter's Events as they reached the
// function, the repair, the controller), and tears everything down.
//
//	go run ./cmd/demo [--argo v3.5.10] [--without] [--fast]
//
// --fast skips Karpenter and the Broker: the demo evicts the pod itself, as a Karpenter drain
// would, and the adapter posts straight to the function. The first
// run builds the binaries into ~/.cache/argo-disruption-handler (see docs/dev/README.md).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/manifests"
)

func main() {
	argo := flag.String("argo", "v3.5.10", "Argo workflow-controller version: v3.5.10, v3.6.10 or v3.7.3")
	without := flag.Bool("without", false, "run the controller alone, without the function, for comparison")
	wait := flag.Duration("wait", 90*time.Second, "how long to follow the workflow after the eviction")
	fast := flag.Bool("fast", false, "no Karpenter, no Broker: evict the pod directly, as a Karpenter drain would")
	flag.Parse()
	if err := run(*argo, *without, !*fast, *wait); err != nil {
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

func run(argo string, without, karpenter bool, wait time.Duration) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "adh-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := build(ctx, argo, karpenter, tmp)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{ArgoVersion: argo, Nodes: 1, Karpenter: karpenter})
	if err != nil {
		return err
	}
	var fn *scenario.Function
	var tap *cesink.Sink
	defer func() {
		fn.Stop()
		if tap != nil {
			tap.Close()
		}
		c.Stop()
	}()
	c.StopOnSignal(func(os.Signal) { fn.Stop(); os.Exit(130) })
	parts := "etcd, kube-apiserver, kube-controller-manager, kwok"
	if karpenter {
		parts += ", kube-scheduler, Karpenter " + localcluster.KarpenterVersion + " (KWOK provider)"
	}
	step("control plane up in %s: %s, Argo %s", time.Since(start).Round(time.Millisecond), parts, argo)

	mode := scenario.With
	if without {
		mode = scenario.Without
	} else {
		fn, err = scenario.StartFunction(ctx, bin, c.Kubeconfig(), filepath.Join(c.LogDir(), "function.log"), nil)
		if err != nil {
			return err
		}
		// A tap in front of the function shows when each event was delivered.
		if tap, err = cesink.Forward(fn.URL); err != nil {
			return err
		}
		sink, through := tap.URL, "straight from"
		watched := []localcluster.AdapterResource{{Version: "v1", Resource: "pods", Selector: argoworkflow.LabelWorkflow}}
		if karpenter {
			watched = append(watched, localcluster.AdapterResource{Version: "v1", Resource: "events"},
				localcluster.AdapterResource{Version: "v1", Resource: "nodes"},
				localcluster.AdapterResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"})
			if sink, err = startBroker(ctx, c, tap.URL); err != nil {
				return err
			}
			through = "through the Broker and Triggers of the chart from"
		}
		if err := c.StartAdapterFor(sink, []string{"default"}, watched); err != nil {
			return err
		}
		step("function listening on %s, fed %s the ApiServerSource adapter (pods with label %s%s)", fn.URL, through, argoworkflow.LabelWorkflow,
			map[bool]string{true: "; Events, Nodes, NodeClaims", false: ""}[karpenter])
	}
	e, err := scenario.NewEnv(c, argo, wait, nil)
	if err != nil {
		return err
	}
	spec, how := scenario.Spec{Namespace: "default", Node: localcluster.NodeName(0), OnExit: true}, scenario.Evict
	if karpenter {
		spec.Node, spec.NodePool, how = "", localcluster.KarpenterNodePool, scenario.KarpenterDrift
		step("submitting a one-step workflow with an exit handler on NodePool %q; 11 s after its pod starts on the node Karpenter launches, the NodePool's template changes and Karpenter drifts the node", spec.NodePool)
	} else {
		step("submitting a one-step workflow with an exit handler; its pod will be evicted 11 s after it starts")
	}
	r := e.PodDeletion(ctx, "b", mode, spec, how, fn)
	if r.Err != nil {
		return r.Err
	}
	printTimeline(r, fn, tap, wait)
	return nil
}

// startBroker runs Knative Eventing's Broker data plane with the Broker and Triggers the chart
// ships, their subscriber (the function's Service) at fn, and returns the ingress URL.
func startBroker(ctx context.Context, c *localcluster.Cluster, fn string) (string, error) {
	broker, triggers, err := manifests.Broker()
	if err != nil {
		return "", err
	}
	b, err := c.StartBroker(ctx, localcluster.BrokerOptions{Broker: broker, Triggers: triggers,
		Addresses: map[string]string{"argo-disruption-handler": fn}})
	if err != nil {
		return "", err
	}
	step("Broker %s/%s up in %s: ingress, InMemoryChannel dispatcher, filter (Knative Eventing %s), %d Triggers", b.Namespace, b.Name, b.Ready.Round(time.Millisecond), localcluster.AdapterVersion, len(triggers))
	return b.IngressURL, nil
}

// build builds the control plane's binaries (cached) and the function's, into dir.
func build(ctx context.Context, argo string, karpenter bool, dir string) (string, error) {
	root, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "func.yaml")); err != nil {
		return "", fmt.Errorf("run the demo from the repository root (go run ./cmd/demo)")
	}
	step("building the control plane binaries if needed (first run: ~25 min, then cached)")
	components := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kwok", "adapter", "argo-" + argo}
	if karpenter {
		components = append(components, "kube-scheduler", "karpenter", "broker")
	}
	bins := exec.Command("internal/localcluster/build-bins.sh", components...)
	bins.Stdout, bins.Stderr = os.Stdout, os.Stderr
	if err := bins.Run(); err != nil {
		return "", fmt.Errorf("building binaries: %w", err)
	}
	return scenario.BuildFunction(ctx, root, dir)
}

// karpenterReasons are the Karpenter Events of a disruption the timeline shows (its other Events
// report status changes).
var karpenterReasons = map[string]bool{"DisruptionLaunching": true, "DisruptionWaitingReadiness": true,
	"DisruptionTerminating": true, "Evicted": true, "Disrupted": true, "FailedDraining": true}

// printTimeline prints what happened around the eviction: Karpenter's Events as they reached the
// function, the function's own steps, the controller's.
func printTimeline(r scenario.Result, fn *scenario.Function, tap *cesink.Sink, wait time.Duration) {
	timeline := r.Timeline
	if tap != nil {
		for _, req := range tap.Received() {
			var ev corev1.Event
			if kind, _ := req.Event.Extensions()["kind"].(string); kind != "Event" || json.Unmarshal(req.Event.Data(), &ev) != nil ||
				ev.Source.Component != "karpenter" || !karpenterReasons[ev.Reason] || req.At.Before(r.T0.Add(-time.Minute)) {
				continue
			}
			timeline = append(timeline, fmt.Sprintf("%+7.2fs  Karpenter Event %s on %s %s: %q (delivered)",
				req.At.Sub(r.T0).Seconds(), ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Message))
		}
	}
	if fn != nil {
		// The repair's plan, and the receipt of the event that led to it (the same CloudEvent
		// id): the pod's other events are received too, and dismissed.
		for _, plan := range fn.LogEntries(`"repair plan"`, r.Workflow) {
			if plan.At.Before(r.T0.Truncate(time.Millisecond)) {
				continue
			}
			if id := plan.Field("ceID"); id != "" {
				if recv := fn.LogEntries(`"event received"`, `"ceID":"`+id+`"`); len(recv) > 0 {
					timeline = append(timeline, fmt.Sprintf("%+7.2fs  event received by the function (%s)", recv[0].At.Sub(r.T0).Seconds(), plan.Field("ceType")))
				}
			}
			timeline = append(timeline, fmt.Sprintf("%+7.2fs  function decided the repair", plan.At.Sub(r.T0).Seconds()))
			break
		}
	}
	sort.SliceStable(timeline, func(i, j int) bool { return seconds(timeline[i]) < seconds(timeline[j]) })
	fmt.Println("\ntimeline (seconds from the eviction):")
	for _, l := range timeline {
		fmt.Println("  " + l)
	}
	if r.Moved < 0 {
		fmt.Printf("  after %s the workflow is still Running: %s\n", wait, r.Outcome)
	}
	fmt.Printf("\nresult: %s\n", r.Outcome)
}
