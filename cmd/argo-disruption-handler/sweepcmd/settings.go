// The deployed settings: the ConfigMap the chart renders (deploy/chart/templates/settings.yaml),
// which the function's pod reads as its environment; the audit must judge with the same scope and
// grace, not with whatever ADH_* the terminal happens to hold.

package sweepcmd

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"function/config"
)

// Where the chart puts the settings: the ConfigMap adh.settingsName, in the release namespace
// the install guide uses.
const (
	SettingsConfigMap        = "argo-disruption-handler-settings"
	DefaultSettingsNamespace = "argo-disruption-handler"
)

// settings reads the configuration the flags name, and says where from.
func settings(ctx context.Context, f *flags, d deps, rc *rest.Config) (cfg *config.Config, from string, err error) {
	if f.settingsFromEnv {
		cfg, err = config.Load()
		if err != nil {
			return nil, "", fmt.Errorf("settings from the environment: %w", err)
		}
		return cfg, "the ADH_* environment (--settings-from-env)", nil
	}
	ns, name := f.settingsNamespace, SettingsConfigMap
	kube, err := d.kube(rc)
	if err != nil {
		return nil, "", fmt.Errorf("building the client to read ConfigMap %s/%s: %w", ns, name, err)
	}
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("no ConfigMap %s/%s, which holds the deployed settings: is the chart installed in namespace %s? "+
			"Name its release namespace with --settings-namespace, or read ADH_* from the environment with --settings-from-env", ns, name, ns)
	case err != nil:
		return nil, "", fmt.Errorf("reading ConfigMap %s/%s (the deployed settings): %w; --settings-from-env reads ADH_* from the environment instead", ns, name, err)
	}
	cfg, err = config.FromMap(cm.Data)
	if err != nil {
		return nil, "", fmt.Errorf("settings in ConfigMap %s/%s: %w", ns, name, err)
	}
	return cfg, "ConfigMap " + ns + "/" + name, nil
}

// describe is what of the settings decides what the sweep finds, in one line.
func describe(cfg *config.Config, graceFlag bool) string {
	scope := "every namespace"
	if len(cfg.Namespaces) > 0 {
		scope = "namespaces " + strings.Join(cfg.Namespaces, ",")
	}
	if len(cfg.ExcludedNamespaces) > 0 {
		scope += " except " + strings.Join(cfg.ExcludedNamespaces, ",")
	}
	instance := "workflows without a controller instance ID"
	if cfg.ControllerInstanceID != "" {
		instance = fmt.Sprintf("controller instance ID %q", cfg.ControllerInstanceID)
	}
	grace := "grace " + cfg.SweepGrace.String()
	if graceFlag {
		grace += " (--grace)"
	}
	return scope + ", " + instance + ", " + grace
}
