// Package apifake is the unit tests' one fake API: a strict Cluster of fake clientsets that
// answers as kube-apiserver does where the repair's safety depends on it (JSON patch test
// operations, resourceVersion preconditions, dry runs), and the objects the tests hold in it. It
// is for tests only; the real behaviour is proven against kube-apiserver in test/e2e.
package apifake

import (
	"encoding/json"
	"net/http"
	"reflect"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
)

// Faker is what the generated fake clientsets embed.
type Faker interface {
	PrependReactor(verb, resource string, reaction k8stesting.ReactionFunc)
	Tracker() k8stesting.ObjectTracker
}

// JSONPatchLikeAPIServer prepends a reactor that applies JSON patches itself.
func JSONPatchLikeAPIServer(f Faker) {
	f.PrependReactor("patch", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a, ok := action.(k8stesting.PatchActionImpl)
		if !ok || a.GetPatchType() != types.JSONPatchType {
			return false, nil, nil
		}
		return Apply(f.Tracker(), a)
	})
}

// Apply applies a JSON patch action to the tracker's object as the API server would.
func Apply(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) (bool, runtime.Object, error) {
	cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return true, nil, err
	}
	patch, err := jsonpatch.DecodePatch(a.GetPatch())
	if err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	before, _ := json.Marshal(cur)
	after, err := patch.Apply(before)
	if err != nil {
		return true, nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure,
			Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid, Message: err.Error()}}
	}
	obj := reflect.New(reflect.TypeOf(cur).Elem()).Interface().(runtime.Object)
	if err := json.Unmarshal(after, obj); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if len(a.PatchOptions.DryRun) > 0 {
		return true, obj, nil
	}
	if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, obj, nil
}
