// The scope: whether a workflow is ours to touch (its namespace is allowed, and the Argo
// controller that owns it is the one we were configured for).

package config

import (
	"errors"
	"fmt"
	"slices"

	"function/internal/argoworkflow"
)

// Why an object is out of scope (Check wraps them).
var (
	ErrNamespaceOutOfScope = errors.New("namespace out of scope")
	ErrOtherInstance       = errors.New("another controller's workflow")
)

// Scope is the set of workflows the function may write.
type Scope struct {
	// Namespaces allowed; empty allows all.
	Namespaces []string
	// Excluded namespaces, refused even when listed in Namespaces.
	Excluded []string
	// ControllerInstanceID is the Argo controller's instanceID; "" means workflows without the instance-id label.
	ControllerInstanceID string
}

// NamespaceAllowed reports whether ns may be acted in.
func (s Scope) NamespaceAllowed(ns string) bool {
	if slices.Contains(s.Excluded, ns) {
		return false
	}
	return len(s.Namespaces) == 0 || slices.Contains(s.Namespaces, ns)
}

// Check returns nil when an object in ns with these labels is in scope, else why not.
// An Argo controller only reconciles workflows whose instance-id label equals its own instanceID
// (absent when it has none); writing another controller's workflow would be acting for it.
func (s Scope) Check(ns string, labels map[string]string) error {
	if !s.NamespaceAllowed(ns) {
		return fmt.Errorf("%w: %q", ErrNamespaceOutOfScope, ns)
	}
	id, has := labels[argoworkflow.LabelInstanceID]
	switch {
	case s.ControllerInstanceID == "" && has:
		return fmt.Errorf("%w: controller instance-id %q is not ours (none configured)", ErrOtherInstance, id)
	case s.ControllerInstanceID != "" && id != s.ControllerInstanceID:
		return fmt.Errorf("%w: controller instance-id %q is not ours (%q)", ErrOtherInstance, id, s.ControllerInstanceID)
	}
	return nil
}
