package localcluster

import (
	"context"
	"embed"
	"fmt"
	"path"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Knative Serving's own CRDs (their schemas and status subresources), so what a client such as
// `func deploy` writes is validated and pruned as on a cluster with Knative Serving.
//
//go:embed crds/knative-serving/*.yaml
var knativeServingCRDs embed.FS

// The Knative Serving resources the stack serves.
var (
	KnativeServiceGVR = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	KnativeRouteGVR   = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "routes"}
)

// InstallKnativeServingCRDs installs the Service, Configuration, Revision and Route CRDs of
// Knative Serving. No Knative controller or webhook runs: nothing defaults, reconciles or
// serves a Service (see ServeKnativeServices).
func (c *Cluster) InstallKnativeServingCRDs(ctx context.Context) error {
	var docs [][]byte
	for _, name := range []string{"service", "configuration", "revision", "route"} {
		data, err := knativeServingCRDs.ReadFile(path.Join("crds/knative-serving", name+".yaml"))
		if err != nil {
			return err
		}
		docs = append(docs, data)
	}
	return c.createCRDs(ctx, docs)
}

// ServeKnativeServices stands in for Knative Serving's controller in namespace until ctx ends:
// every Service whose status has not observed its generation gets a Route of its name with a
// cluster-local URL, and a status that says Ready with that URL and a revision
// <name>-<generation>. That is what a client waiting for a Service to become Ready (`func
// deploy`) reads; no Configuration, Revision, Deployment or pod is created. Errors of a pass are
// sent to errf and the pass is retried.
func (c *Cluster) ServeKnativeServices(ctx context.Context, namespace string, errf func(format string, args ...any)) {
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := c.dyn.Resource(KnativeServiceGVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() == nil {
				errf("list Knative Services: %v", err)
			}
			return false, nil
		}
		for i := range list.Items {
			if err := c.markServiceReady(ctx, &list.Items[i]); err != nil && ctx.Err() == nil {
				errf("Knative Service %s/%s: %v", namespace, list.Items[i].GetName(), err)
			}
		}
		return false, nil
	})
}

// markServiceReady writes the Route and the Ready status of svc unless its status already
// observed its generation.
func (c *Cluster) markServiceReady(ctx context.Context, svc *unstructured.Unstructured) error {
	gen := svc.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(svc.Object, "status", "observedGeneration")
	if observed == gen {
		return nil
	}
	name, ns := svc.GetName(), svc.GetNamespace()
	url := fmt.Sprintf("http://%s.%s.svc.cluster.local", name, ns)
	revision := fmt.Sprintf("%s-%05d", name, gen)
	now := metav1.Now().UTC().Format(time.RFC3339)
	conditions := []any{}
	for _, t := range []string{"ConfigurationsReady", "Ready", "RoutesReady"} {
		conditions = append(conditions, map[string]any{"type": t, "status": "True", "lastTransitionTime": now})
	}
	status := map[string]any{
		"observedGeneration":        gen,
		"url":                       url,
		"address":                   map[string]any{"url": url},
		"latestCreatedRevisionName": revision,
		"latestReadyRevisionName":   revision,
		"traffic":                   []any{map[string]any{"revisionName": revision, "latestRevision": true, "percent": int64(100)}},
		"conditions":                conditions,
	}

	routes := c.dyn.Resource(KnativeRouteGVR).Namespace(ns)
	route, err := routes.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		route = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "serving.knative.dev/v1",
			"kind":       "Route",
			"metadata": map[string]any{
				"name":      name,
				"namespace": ns,
				"labels":    map[string]any{"serving.knative.dev/service": name},
				"ownerReferences": []any{map[string]any{
					"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name,
					"uid": string(svc.GetUID()), "controller": true, "blockOwnerDeletion": true,
				}},
			},
			"spec": map[string]any{"traffic": []any{map[string]any{"configurationName": name, "latestRevision": true, "percent": int64(100)}}},
		}}
		route, err = routes.Create(ctx, route, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("route: %w", err)
	}
	routeStatus := map[string]any{}
	for k, v := range status {
		if k != "latestCreatedRevisionName" && k != "latestReadyRevisionName" {
			routeStatus[k] = v
		}
	}
	routeStatus["observedGeneration"] = route.GetGeneration()
	routeStatus["conditions"] = []any{
		map[string]any{"type": "AllTrafficAssigned", "status": "True", "lastTransitionTime": now},
		map[string]any{"type": "IngressReady", "status": "True", "lastTransitionTime": now},
		map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": now},
	}
	route.Object["status"] = routeStatus
	if _, err := routes.UpdateStatus(ctx, route, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("route status: %w", err)
	}

	svc.Object["status"] = status
	if _, err := c.dyn.Resource(KnativeServiceGVR).Namespace(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}
