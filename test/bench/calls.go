//go:build e2e

package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"function/internal/localcluster/apitap"
)

// keys lists the calls as "METHOD resource", a failed one with its status or error.
func keys(cs []apitap.Call) string {
	var ks []string
	for _, c := range cs {
		k := c.Key()
		if c.Status >= 300 || c.Err != "" {
			k += fmt.Sprintf(" (%d%s)", c.Status, map[bool]string{true: " " + c.Err, false: ""}[c.Err != ""])
		}
		ks = append(ks, k)
	}
	return strings.Join(ks, ", ")
}

// patchedAt is when the task result patch (or create) was answered, zero if none.
func patchedAt(cs []apitap.Call) (time.Time, bool) {
	for _, c := range cs {
		if c.Resource() == "workflowtaskresults" && (c.Method == http.MethodPatch || c.Method == http.MethodPost) && c.Status < 300 {
			return c.End, true
		}
	}
	return time.Time{}, false
}

// explain says why the handler makes a call, by method and resource; the bench lists whatever
// happens, and this only annotates it (an unknown call is shown as such).
func explain(c apitap.Call) string {
	patch := ""
	switch {
	case strings.Contains(c.ContentType, "json-patch"):
		patch = " (JSON patch: test operations checked by the API server, no read needed)"
	case strings.Contains(c.ContentType, "merge-patch"):
		patch = " (merge patch)"
	}
	switch {
	case c.Status == http.StatusConflict:
		return "409 Conflict: lost a race, a re-read follows"
	case c.Status == http.StatusUnprocessableEntity && c.Method == http.MethodPatch:
		return "422: a test operation failed (the object is not as expected): the full path reads and decides"
	}
	switch c.Key() {
	case "GET workflows":
		return "read the Workflow: scope (namespace, instance ID), phase, the gate, existing records"
	case "GET pods":
		return "is the pod really gone, or re-created under the same name (a live pod may still report)?"
	case "GET nodes":
		return "the pod's Node: is its host gone?"
	case "GET workflowtaskresults":
		return "the node's task result: its label and resourceVersion"
	case "PATCH workflowtaskresults":
		return "THE REPAIR: label report-outputs-completed=true + our marker" + patch
	case "POST workflowtaskresults":
		return "THE REPAIR (ladder step 2): create the missing task result, already complete"
	case "PATCH pods":
		return "release the status finalizer / record a warning on the pod" + patch
	case "POST events":
		return "Kubernetes Event PodDisrupted on the Workflow (deterministic name: a re-delivery gets AlreadyExists)"
	case "PATCH workflows":
		return "the disruption record annotation on the Workflow" + patch
	}
	return "(not explained by the bench: see the handler code)"
}
