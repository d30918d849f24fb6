package apifake

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
)

// Cluster is a pair of fake clientsets (Kubernetes and Argo) made strict where the repair's safety depends on the
// API server: a merge patch carrying metadata.resourceVersion is refused with 409 unless it
// matches, every accepted write bumps the resourceVersion, and dry-run writes change nothing.
// It is the one fake API of the unit tests, for branch coverage only; the real proof runs against
// kube-apiserver (test/e2e).
type Cluster struct {
	Kube *kubefake.Clientset
	Argo *argofake.Clientset
	mu   sync.Mutex
	// calls lists "verb resource/name" for every API call, in order.
	calls []string
	// failNext makes the next call matching "verb resource" fail with this error.
	failNext map[string]error
	failAll  error
	claims   []NodeClaim
}

// NewCluster returns a Cluster holding objs: Argo's objects in the Argo clientset, the rest in the
// Kubernetes one.
func NewCluster(objs ...runtime.Object) *Cluster {
	var kubeObjs, argoObjs []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *wfv1.Workflow, *wfv1.WorkflowTaskResult:
			argoObjs = append(argoObjs, o)
		default:
			kubeObjs = append(kubeObjs, o)
		}
	}
	c := &Cluster{Kube: kubefake.NewSimpleClientset(kubeObjs...), Argo: argofake.NewSimpleClientset(argoObjs...), failNext: map[string]error{}}
	c.Kube.PrependReactor("*", "*", c.react(c.Kube.Tracker()))
	c.Argo.PrependReactor("*", "*", c.react(c.Argo.Tracker()))
	return c
}

func (c *Cluster) react(tracker k8stesting.ObjectTracker) k8stesting.ReactionFunc {
	return func(action k8stesting.Action) (bool, runtime.Object, error) {
		name := ""
		switch a := action.(type) {
		case k8stesting.CreateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case interface{ GetName() string }: // get, patch, delete
			name = a.GetName()
		}
		c.mu.Lock()
		c.calls = append(c.calls, fmt.Sprintf("%s %s/%s", action.GetVerb(), action.GetResource().Resource, name))
		key := action.GetVerb() + " " + action.GetResource().Resource
		err, fail := c.failNext[key]
		delete(c.failNext, key)
		if c.failAll != nil {
			err, fail = c.failAll, true
		}
		c.mu.Unlock()
		if fail {
			return true, nil, err
		}
		switch a := action.(type) {
		case k8stesting.ListActionImpl:
			if fs := a.GetListRestrictions().Fields; a.GetResource().Resource == "pods" && fs != nil && !fs.Empty() {
				return listPods(tracker, a)
			}
		case k8stesting.PatchActionImpl:
			return c.patch(tracker, a)
		case k8stesting.CreateActionImpl:
			if len(a.CreateOptions.DryRun) > 0 {
				if _, err := tracker.Get(a.GetResource(), a.GetNamespace(), name); err == nil {
					return true, nil, apierrors.NewAlreadyExists(a.GetResource().GroupResource(), name)
				}
				return true, a.GetObject(), nil
			}
			m, _ := meta.Accessor(a.GetObject())
			m.SetResourceVersion("1")
		}
		return false, nil, nil
	}
}

func (c *Cluster) patch(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) (bool, runtime.Object, error) {
	if a.GetPatchType() == types.JSONPatchType {
		// Test operations are the precondition; a failed one is 422, as kube-apiserver answers.
		handled, obj, err := Apply(tracker, a)
		switch {
		case err != nil:
			c.refused()
		case len(a.PatchOptions.DryRun) == 0:
			// The API server answers with the object as written, new resourceVersion included.
			obj = c.bumpRV(tracker, a)
		}
		return handled, obj, err
	}
	if a.GetPatchType() != types.MergePatchType {
		return true, nil, fmt.Errorf("fake cluster: only merge and JSON patches are expected, got %s", a.GetPatchType())
	}
	cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return true, nil, err
	}
	m, _ := meta.Accessor(cur)
	var p struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(a.GetPatch(), &p); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if p.Metadata.ResourceVersion != "" && p.Metadata.ResourceVersion != m.GetResourceVersion() {
		return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), a.GetName(), fmt.Errorf("the object has been modified"))
	}
	if len(a.PatchOptions.DryRun) > 0 {
		return true, cur, nil
	}
	before, _ := json.Marshal(cur)
	after, err := jsonpatch.MergePatch(before, a.GetPatch())
	if err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	obj := reflect.New(reflect.TypeOf(cur).Elem()).Interface().(runtime.Object)
	if err := json.Unmarshal(after, obj); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	om, _ := meta.Accessor(obj)
	rv, _ := strconv.Atoi(m.GetResourceVersion())
	om.SetResourceVersion(strconv.Itoa(rv + 1))
	if om.GetDeletionTimestamp() != nil && len(om.GetFinalizers()) == 0 {
		// As kube-apiserver: the last finalizer of an object being deleted removes it.
		return true, obj, tracker.Delete(a.GetResource(), a.GetNamespace(), a.GetName())
	}
	if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, obj, nil
}

// bumpRV gives the object just written by a JSON patch a new resourceVersion and returns it.
func (c *Cluster) bumpRV(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) runtime.Object {
	cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return nil
	}
	m, _ := meta.Accessor(cur)
	rv, _ := strconv.Atoi(m.GetResourceVersion())
	m.SetResourceVersion(strconv.Itoa(rv + 1))
	_ = tracker.Update(a.GetResource(), cur, a.GetNamespace())
	return cur
}

// Calls lists "verb resource/name" for every API call so far, in order; a conditional write the
// API server refused ends in " (refused)".
func (c *Cluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// refused marks the last call as a write the API server refused: it changed nothing.
func (c *Cluster) refused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[len(c.calls)-1] += " (refused)"
}

// Writes are the calls that changed something (refused conditional writes excluded).
func (c *Cluster) Writes() []string {
	var out []string
	for _, s := range c.Calls() {
		if s[:3] != "get" && s[:4] != "list" && !strings.HasSuffix(s, " (refused)") {
			out = append(out, s)
		}
	}
	return out
}

// FailNext makes the next call matching "verb resource" ("patch pods") fail with err.
func (c *Cluster) FailNext(call string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext[call] = err
}

// FailAll makes every call from now on fail with err (nil: none).
func (c *Cluster) FailAll(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failAll = err
}

// Count is how many calls were made of "verb resource" ("get pods"; "": all).
func (c *Cluster) Count(call string) int {
	n := 0
	for _, s := range c.Calls() {
		if verbResource, _, _ := strings.Cut(s, "/"); call == "" || verbResource == call {
			n++
		}
	}
	return n
}

// listPods answers a pod LIST with a field selector (spec.nodeName), which the fake tracker
// ignores, as the API server does.
func listPods(tracker k8stesting.ObjectTracker, a k8stesting.ListActionImpl) (bool, runtime.Object, error) {
	obj, err := tracker.List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), a.GetNamespace())
	if err != nil {
		return true, nil, err
	}
	list := obj.(*corev1.PodList)
	r := a.GetListRestrictions()
	var keep []corev1.Pod
	for _, p := range list.Items {
		if r.Fields.Matches(fields.Set{"spec.nodeName": p.Spec.NodeName, "metadata.name": p.Name, "metadata.namespace": p.Namespace}) &&
			(r.Labels == nil || r.Labels.Matches(labels.Set(p.Labels))) {
			keep = append(keep, p)
		}
	}
	list.Items = keep
	return true, list, nil
}

// GetWorkflow reads the Workflow WorkflowName.
func (c *Cluster) GetWorkflow(t testing.TB) *wfv1.Workflow {
	t.Helper()
	wf, err := c.Argo.ArgoprojV1alpha1().Workflows(Namespace).Get(context.Background(), WorkflowName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

// GetTaskResult reads the task result of node NodeID.
func (c *Cluster) GetTaskResult(t testing.TB) *wfv1.WorkflowTaskResult {
	t.Helper()
	tr, err := c.Argo.ArgoprojV1alpha1().WorkflowTaskResults(Namespace).Get(context.Background(), NodeID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
