//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"function/test/e2e/cluster"
	"function/test/e2e/scenario"
)

// functionStack builds the function binary and starts the local control plane with opts,
// stopped (logs kept on failure) when the test ends or the process is interrupted; bound is how
// long scenarios wait for a workflow.
func functionStack(ctx context.Context, t *testing.T, opts cluster.Options, bound time.Duration) (bin string, c *cluster.Cluster, e *scenario.Env) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	bin, err := scenario.BuildFunction(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Logf = t.Logf
	c, err = cluster.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	stopSignal := c.StopOnSignal(nil)
	t.Cleanup(func() {
		stopSignal()
		if t.Failed() || os.Getenv("ADH_E2E_KEEP") != "" {
			c.Keep()
			t.Logf("logs kept in %s", c.LogDir())
		}
		c.Stop()
	})
	if e, err = scenario.NewEnv(c, opts.ArgoVersion, bound, t.Logf); err != nil {
		t.Fatal(err)
	}
	return bin, c, e
}

// runFunction starts the built function against c with the given settings (its log in the
// stack's log directory), and stops it when the test ends.
func runFunction(ctx context.Context, t *testing.T, bin string, c *cluster.Cluster, settings map[string]string) *scenario.Function {
	t.Helper()
	fn, err := scenario.StartFunction(ctx, bin, c.Kubeconfig(), filepath.Join(c.LogDir(), "function.log"), settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.Stop)
	return fn
}
