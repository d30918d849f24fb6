// The Kubernetes and Argo clients, from a kubeconfig (KUBECONFIG, for local runs) or the
// in-cluster service account (Knative), with a bounded request rate.

package wiring

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
)

// Set is the clients the function uses.
type Clients struct {
	Config  *rest.Config
	Kube    kubernetes.Interface
	Argo    argoclient.Interface
	Dynamic dynamic.Interface
	// REST makes the raw requests the typed clients cannot (NodeClaims as a printed Table).
	REST rest.Interface
	// TokenReviews verifies senders' tokens on a rate budget of its own (WithOwnBudget), so that
	// a flood of junk tokens cannot spend the repairs' budget. nil: Kube (fake clientsets).
	TokenReviews kubernetes.Interface
}

// Options tune the clients.
type ClientOptions struct {
	// Base is the cluster to reach, as a command line resolved it (kubectl's flags, through
	// k8s.io/cli-runtime); nil: Kubeconfig. It is copied, never changed.
	Base *rest.Config
	// Kubeconfig is a kubeconfig path. "" means: $KUBECONFIG when set, else the in-cluster
	// service account when running in a pod, else ~/.kube/config.
	Kubeconfig string
	QPS        float32
	Burst      int
	// Timeout bounds each request, so a hung API server turns into an error (and a 503) before
	// func-go's 30 s write timeout.
	Timeout   time.Duration
	UserAgent string
}

// RESTConfig loads the configuration (o.Base, else see Options.Kubeconfig for the order) and
// bounds its request rate and time.
func RESTConfig(o ClientOptions) (*rest.Config, error) {
	cfg := o.Base
	if cfg == nil {
		var err error
		if cfg, err = load(o.Kubeconfig); err != nil {
			return nil, err
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst, cfg.Timeout = o.QPS, o.Burst, o.Timeout
	// One token bucket for the Kubernetes, Argo and dynamic clientsets together: each would
	// otherwise build its own from QPS/Burst, and the function's load on the API server would be
	// three times the setting.
	if o.QPS > 0 && o.Burst > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(o.QPS, o.Burst)
	}
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	return cfg, nil
}

// load reads the kubeconfig at path, $KUBECONFIG, the in-cluster service account or
// ~/.kube/config, in this order.
func load(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	explicit := path != "" || os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != ""
	if !explicit {
		cfg, err = rest.InClusterConfig()
	}
	if explicit || errors.Is(err, rest.ErrNotInCluster) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = path
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("loading cluster configuration (kubeconfig %q): %w", path, err)
	}
	return cfg, nil
}

// New builds the clients from cfg. It does not contact the API server.
func NewClients(cfg *rest.Config) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building Kubernetes client for %s: %w", cfg.Host, err)
	}
	argo, err := argoclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building Argo client for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building dynamic client for %s: %w", cfg.Host, err)
	}
	return &Clients{Config: cfg, Kube: kube, Argo: argo, Dynamic: dyn, REST: kube.CoreV1().RESTClient()}, nil
}

// WithOwnBudget returns a copy of cfg whose clients draw from a token bucket of their own (qps,
// burst), apart from the one cfg's clients share; the transport wrappers are kept.
func WithOwnBudget(cfg *rest.Config, qps float32, burst int) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, burst
	c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(qps, burst)
	return c
}
