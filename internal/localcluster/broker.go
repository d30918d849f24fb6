package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// BrokerVersion is the knative.dev/eventing version of the broker data plane build.
const BrokerVersion = "v0.50.0"

const (
	// EventingNamespace is the data plane's SYSTEM_NAMESPACE, where its ConfigMaps live.
	EventingNamespace = "knative-eventing"
	// DispatcherPort and DispatcherTLSPort are the InMemoryChannel dispatcher's ports, hard-coded
	// upstream on all interfaces: one dispatcher per machine.
	DispatcherPort    = 8080
	DispatcherTLSPort = 8443
	// filterHost is the filter's in-cluster name: the dispatcher reaches it through a proxy, so
	// that dead letters name the real subscriber as in a cluster (see brokerProxy).
	filterHost = "broker-filter." + EventingNamespace + ".svc.cluster.local"
	// CanaryType is the CloudEvent type of the harness's propagation probe (Trigger e2e-canary).
	CanaryType    = "dev.adh.localcluster.canary"
	canaryTrigger = "e2e-canary"
)

var (
	// BrokerGVR, TriggerGVR and InMemoryChannelGVR are the eventing resources the harness writes.
	BrokerGVR          = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "brokers"}
	TriggerGVR         = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"}
	InMemoryChannelGVR = schema.GroupVersionResource{Group: "messaging.knative.dev", Version: "v1", Resource: "inmemorychannels"}
)

// BrokerOptions configure StartBroker.
type BrokerOptions struct {
	// Broker is an eventing.knative.dev/v1 Broker as shipped (e.g. the chart's templates/broker.yaml); its
	// namespace is created if needed.
	Broker *unstructured.Unstructured
	// Triggers are the Broker's Triggers, all in its namespace.
	Triggers []*unstructured.Unstructured
	// Addresses are the URLs destination refs (subscribers, dead-letter sinks) resolve to, by the
	// ref's name: what Knative Serving would publish as the Service's address.
	Addresses map[string]string
	// Timeout bounds the wait for the canary event (default 60 s).
	Timeout time.Duration
}

// Broker is a running broker data plane with its objects applied.
type Broker struct {
	Namespace, Name string
	// IngressURL receives CloudEvents for the Broker (the adapter's sink).
	IngressURL string
	// ChannelURL is the InMemoryChannel's path-routed address on the dispatcher.
	ChannelURL string
	// Subscribers is what the harness wrote into the channel, by Trigger name (the canary's
	// included).
	Subscribers map[string]BrokerSubscriber
	// Ready is how long StartBroker took, canary included.
	Ready time.Duration
}

// BrokerSubscriber is one Trigger as the controllers would have wired it.
type BrokerSubscriber struct {
	TriggerUID string
	// SubscriberURI is the Trigger's resolved subscriber (its status.subscriberUri).
	SubscriberURI string
	// FilterURI is what the dispatcher calls: the filter's path for the Trigger.
	FilterURI string
	// DeadLetterSinkURI is the resolved sink ("" for none).
	DeadLetterSinkURI string
	// Delivery is the channel subscriber's delivery (nil for none).
	Delivery map[string]any
}

// brokerPorts are the free ports the data plane listens on besides the dispatcher's fixed ones.
type brokerPorts struct {
	ingress, ingressTLS, filter, filterTLS, profiling int
}

// StartBroker runs Knative Eventing's MT-channel broker data plane (ingress, filter,
// InMemoryChannel dispatcher) against the cluster and applies opts' Broker and Triggers. No
// eventing controller runs: the harness writes what they would (Trigger status, the Broker's
// channel with one subscriber per Trigger, the channel's and Broker's status), then waits until a
// canary event crosses the whole chain. The processes stop with the cluster.
func (c *Cluster) StartBroker(ctx context.Context, opts BrokerOptions) (*Broker, error) {
	begin := time.Now()
	if opts.Broker == nil {
		return nil, fmt.Errorf("StartBroker: no Broker")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	dir := filepath.Join(c.opts.CacheDir, "broker-"+BrokerVersion)
	if err := brokerPrerequisites(dir); err != nil {
		return nil, err
	}
	if err := c.installEventing(ctx, dir); err != nil {
		return nil, err
	}
	ports, err := freeBrokerPorts()
	if err != nil {
		return nil, err
	}
	proxy, err := c.startFilterProxy(ports.filter)
	if err != nil {
		return nil, err
	}
	if err := c.startBrokerProcs(ctx, dir, ports, proxy); err != nil {
		return nil, err
	}
	b := &Broker{
		Namespace:   opts.Broker.GetNamespace(),
		Name:        opts.Broker.GetName(),
		Subscribers: map[string]BrokerSubscriber{},
	}
	b.IngressURL = fmt.Sprintf("http://127.0.0.1:%d/%s/%s", ports.ingress, b.Namespace, b.Name)
	b.ChannelURL = fmt.Sprintf("http://127.0.0.1:%d/%s/%s", DispatcherPort, b.Namespace, channelName(b.Name))
	canary, err := newCanary()
	if err != nil {
		return nil, err
	}
	// Kept until the cluster stops: a canary the filter answered 404 before it knew the Trigger
	// is retried by the channel, and must then succeed rather than become a dead letter.
	c.onStop(canary.close)
	addresses := map[string]string{canaryTrigger: canary.url}
	for k, v := range opts.Addresses {
		addresses[k] = v
	}
	triggers := append(append([]*unstructured.Unstructured{}, opts.Triggers...), canary.trigger(b.Namespace, b.Name))
	if err := c.applyBroker(ctx, b, opts.Broker, triggers, addresses); err != nil {
		return nil, err
	}
	if err := canary.await(ctx, b.IngressURL, opts.Timeout); err != nil {
		return nil, fmt.Errorf("broker %s/%s: %w (logs in %s)", b.Namespace, b.Name, err, c.logDir)
	}
	b.Ready = time.Since(begin)
	return b, nil
}

// brokerPrerequisites checks that the three binaries are built and the dispatcher's fixed ports
// are free (the dispatcher would otherwise run without a data port, saying so only in its log).
func brokerPrerequisites(dir string) error {
	for _, b := range []string{"ingress", "filter", "channel_dispatcher"} {
		if err := checkBin(filepath.Join(dir, b), "broker"); err != nil {
			return err
		}
	}
	for _, p := range []int{DispatcherPort, DispatcherTLSPort} {
		if portInUse(p) {
			return fmt.Errorf("port %d is in use: the InMemoryChannel dispatcher needs it (hard-coded upstream); one broker per machine", p)
		}
	}
	return nil
}

// freeBrokerPorts picks the loopback ports of ingress, filter and the dispatcher's profiling.
func freeBrokerPorts() (brokerPorts, error) {
	var ports brokerPorts
	for _, p := range []*int{&ports.ingress, &ports.ingressTLS, &ports.filter, &ports.filterTLS, &ports.profiling} {
		var err error
		if *p, err = FreePort(); err != nil {
			return ports, err
		}
	}
	return ports, nil
}

// installEventing creates the eventing CRDs build-bins.sh copied, the system namespace and the
// three ConfigMaps every data-plane process watches (it does not start without them).
func (c *Cluster) installEventing(ctx context.Context, dir string) error {
	crds := filepath.Join(dir, "crds")
	if err := c.createCRDFiles(ctx, filepath.Join(crds, "*.yaml"), "no eventing CRDs in "+crds+": run internal/localcluster/build-bins.sh broker"); err != nil {
		return err
	}
	if err := c.EnsureNamespace(ctx, EventingNamespace); err != nil {
		return err
	}
	for _, name := range []string{"config-features", "config-observability", "config-logging"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: EventingNamespace}}
		if name == "config-logging" {
			// Debug logs of each delivery attempt, to read the retries in the logs.
			cm.Data = map[string]string{"loglevel.mt_broker_ingress": "debug", "loglevel.mt_broker_filter": "debug",
				"loglevel.inmemorychannel-dispatcher": "debug"}
		}
		_, err := c.kube.CoreV1().ConfigMaps(EventingNamespace).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", EventingNamespace, name, err)
		}
	}
	return nil
}

// startBrokerProcs starts the dispatcher, the ingress and the filter, and waits until each
// listens (ingress and filter open their ports only once their informers have synced).
func (c *Cluster) startBrokerProcs(ctx context.Context, dir string, ports brokerPorts, proxy string) error {
	common := []string{"KUBECONFIG=" + c.kubeconfig, "SYSTEM_NAMESPACE=" + EventingNamespace, "CLUSTER_DOMAIN=cluster.local"}
	procs := []struct {
		name, bin string
		args, env []string
		port      int
	}{
		{"imc-dispatcher", "channel_dispatcher", []string{"--disable-ha"}, []string{"POD_NAME=imc-dispatcher-0", "CONTAINER_NAME=dispatcher",
			"MAX_IDLE_CONNS=1000", "MAX_IDLE_CONNS_PER_HOST=1000", "PROFILING_PORT=" + strconv.Itoa(ports.profiling),
			"HTTP_PROXY=" + proxy, "http_proxy=" + proxy}, DispatcherPort},
		{"broker-ingress", "ingress", nil, []string{"POD_NAME=mt-broker-ingress-0", "CONTAINER_NAME=ingress",
			"INGRESS_PORT=" + strconv.Itoa(ports.ingress), "INGRESS_PORT_HTTPS=" + strconv.Itoa(ports.ingressTLS)}, ports.ingress},
		{"broker-filter", "filter", nil, []string{"NAMESPACE=" + EventingNamespace, "POD_NAME=mt-broker-filter-0", "CONTAINER_NAME=filter",
			"FILTER_PORT=" + strconv.Itoa(ports.filter), "FILTER_PORT_HTTPS=" + strconv.Itoa(ports.filterTLS)}, ports.filter},
	}
	for _, p := range procs {
		pr, err := c.launch(p.name, filepath.Join(dir, p.bin), p.args, append(append([]string{}, common...), p.env...), 5*time.Second)
		if err != nil {
			return err
		}
		if err := waitListening(ctx, pr, p.port, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// waitListening waits until something accepts connections on the loopback port.
func waitListening(ctx context.Context, p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !portInUse(port) {
		if err := p.exitErr(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: port %d not open after %s (see %s): %w", p.name, port, timeout, p.logPath, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// startFilterProxy serves, on a loopback port, the HTTP proxy the dispatcher is given: it
// forwards requests for the filter's in-cluster name to the filter's port. The dispatcher then
// treats the filter as in a cluster (it unwraps the filter's error answer for dead letters);
// loopback destinations bypass the proxy. It stops with the cluster.
func (c *Cluster) startFilterProxy(filterPort int) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	target := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(filterPort)}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Hostname() != filterHost {
			http.Error(w, "this proxy only knows "+filterHost, http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	c.onStop(func() { _ = srv.Close() })
	return "http://" + l.Addr().String(), nil
}

// channelName is the Broker's InMemoryChannel, named as the broker controller names it.
func channelName(broker string) string { return broker + "-kne-trigger" }

// applyBroker creates the Broker and Triggers and writes, in the controllers' order, what they
// would: Trigger status, the channel and its status, the Broker's status.
func (c *Cluster) applyBroker(ctx context.Context, b *Broker, broker *unstructured.Unstructured, triggers []*unstructured.Unstructured, addresses map[string]string) error {
	if err := c.EnsureNamespace(ctx, b.Namespace); err != nil {
		return err
	}
	created, err := c.createObject(ctx, BrokerGVR, broker)
	if err != nil {
		return err
	}
	brokerDelivery, _, _ := unstructured.NestedMap(created.Object, "spec", "delivery")
	brokerDLS, err := resolveDeadLetterSink(brokerDelivery, addresses)
	if err != nil {
		return fmt.Errorf("broker %s/%s: %w", b.Namespace, b.Name, err)
	}
	var subscribers []any
	for _, t := range triggers {
		sub, err := c.wireTrigger(ctx, b, t, brokerDelivery, brokerDLS, addresses)
		if err != nil {
			return err
		}
		b.Subscribers[t.GetName()] = sub
		subscribers = append(subscribers, channelSubscriber(b, t.GetName(), sub))
	}
	if err := c.createChannel(ctx, b, brokerDelivery, brokerDLS, subscribers); err != nil {
		return err
	}
	return c.patchBrokerStatus(ctx, b, created.GetGeneration(), brokerDLS)
}

// createObject creates obj (its namespace kept) and returns it as stored.
func (c *Cluster) createObject(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	o := obj.DeepCopy()
	o.SetResourceVersion("")
	out, err := c.dyn.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return out, nil
}

// patchStatus merge-patches the status subresource of a namespaced object.
func (c *Cluster) patchStatus(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, status map[string]any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	if _, err := c.dyn.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("writing the status of %s %s/%s: %w", gvr.Resource, ns, name, err)
	}
	return nil
}

// ready is the Ready condition the controllers would set.
func ready() []any {
	return []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}
}

// wireTrigger creates one Trigger and does what the Trigger and Subscription reconcilers would:
// resolve its subscriber and dead-letter sink into its status and compute its channel
// subscriber.
func (c *Cluster) wireTrigger(ctx context.Context, b *Broker, t *unstructured.Unstructured, brokerDelivery map[string]any, brokerDLS string, addresses map[string]string) (BrokerSubscriber, error) {
	if t.GetNamespace() != b.Namespace {
		return BrokerSubscriber{}, fmt.Errorf("trigger %s/%s is not in the Broker's namespace %s", t.GetNamespace(), t.GetName(), b.Namespace)
	}
	created, err := c.createObject(ctx, TriggerGVR, t)
	if err != nil {
		return BrokerSubscriber{}, err
	}
	name := created.GetName()
	dest, _, _ := unstructured.NestedMap(created.Object, "spec", "subscriber")
	subscriber, err := resolveDestination(dest, addresses)
	if err != nil {
		return BrokerSubscriber{}, fmt.Errorf("trigger %s/%s subscriber: %w", b.Namespace, name, err)
	}
	triggerDelivery, hasOwn, _ := unstructured.NestedMap(created.Object, "spec", "delivery")
	dls := brokerDLS
	if d, ok := triggerDelivery["deadLetterSink"].(map[string]any); ok {
		if dls, err = resolveDestination(d, addresses); err != nil {
			return BrokerSubscriber{}, fmt.Errorf("trigger %s/%s dead-letter sink: %w", b.Namespace, name, err)
		}
	}
	subDelivery := brokerDelivery
	if hasOwn {
		subDelivery = triggerDelivery
	}
	sub := BrokerSubscriber{
		TriggerUID:        string(created.GetUID()),
		SubscriberURI:     subscriber,
		FilterURI:         fmt.Sprintf("http://%s/triggers/%s/%s/%s", filterHost, b.Namespace, name, created.GetUID()),
		DeadLetterSinkURI: dls,
		Delivery:          channelDelivery(subDelivery, dls),
	}
	status := map[string]any{"observedGeneration": created.GetGeneration(), "subscriberUri": subscriber, "conditions": ready()}
	if dls != "" {
		status["deadLetterSinkUri"] = dls
	}
	return sub, c.patchStatus(ctx, TriggerGVR, b.Namespace, name, status)
}

// channelDelivery is the delivery the Subscription reconciler writes into the channel for a
// subscription whose spec.delivery is delivery (the Trigger's own, else the Broker's, as the
// Trigger reconciler copies it): the resolved dead-letter sink, and the five retry fields only
// when one of them is set.
func channelDelivery(delivery map[string]any, dls string) map[string]any {
	out := map[string]any{}
	if dls != "" {
		out["deadLetterSink"] = map[string]any{"uri": dls}
	}
	retryFields := []string{"retry", "backoffPolicy", "backoffDelay", "timeout", "retryAfterMax"}
	set := false
	for _, f := range retryFields {
		if _, ok := delivery[f]; ok {
			set = true
		}
	}
	if set {
		for _, f := range retryFields {
			if v, ok := delivery[f]; ok {
				out[f] = v
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// resolveDeadLetterSink resolves delivery's deadLetterSink ("" when there is none).
func resolveDeadLetterSink(delivery map[string]any, addresses map[string]string) (string, error) {
	d, ok := delivery["deadLetterSink"].(map[string]any)
	if !ok {
		return "", nil
	}
	u, err := resolveDestination(d, addresses)
	if err != nil {
		return "", fmt.Errorf("dead-letter sink: %w", err)
	}
	return u, nil
}

// resolveDestination turns a duck Destination into a URL as the URI resolver does: the ref's
// address (from addresses, by the ref's name) with uri resolved against it, or uri alone.
func resolveDestination(dest map[string]any, addresses map[string]string) (string, error) {
	uri, _ := dest["uri"].(string)
	ref, ok := dest["ref"].(map[string]any)
	if !ok {
		if uri == "" {
			return "", fmt.Errorf("destination has neither ref nor uri")
		}
		return uri, nil
	}
	name, _ := ref["name"].(string)
	base, ok := addresses[name]
	if !ok {
		return "", fmt.Errorf("no address for %v %q (BrokerOptions.Addresses)", ref["kind"], name)
	}
	if uri == "" {
		return base, nil
	}
	bu, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("address of %q: %w", name, err)
	}
	ru, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("uri of the destination %q: %w", name, err)
	}
	return bu.ResolveReference(ru).String(), nil
}

// channelSubscriber is one entry of the channel's spec.subscribers, as the Subscription
// reconciler writes it (its UID, in a cluster the Subscription's, is made up here).
func channelSubscriber(b *Broker, trigger string, s BrokerSubscriber) map[string]any {
	uid := string(uuid.NewUUID())
	out := map[string]any{
		"uid":           uid,
		"generation":    int64(1),
		"name":          fmt.Sprintf("%s-%s-%s", b.Name, trigger, s.TriggerUID),
		"subscriberUri": s.FilterURI,
		// Replies re-enter the Broker, as with the reply ref the Trigger reconciler sets.
		"replyUri": b.IngressURL,
	}
	if s.Delivery != nil {
		out["delivery"] = s.Delivery
	}
	return out
}

// createChannel creates the Broker's InMemoryChannel with the subscribers and marks it Ready
// (the dispatcher skips a channel that is not). Its status address is never dialled: the
// ingress reaches the channel by path; the host is what the channel controller would publish.
func (c *Cluster) createChannel(ctx context.Context, b *Broker, brokerDelivery map[string]any, brokerDLS string, subscribers []any) error {
	name := channelName(b.Name)
	spec := map[string]any{"subscribers": subscribers}
	if brokerDelivery != nil {
		spec["delivery"] = brokerDelivery
	}
	imc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "messaging.knative.dev/v1",
		"kind":       "InMemoryChannel",
		"metadata": map[string]any{
			"name":      name,
			"namespace": b.Namespace,
			// Synchronous dispatch, as a Broker without a messaging.knative.dev/async-handler
			// annotation gets.
			"annotations": map[string]any{"eventing.knative.dev/scope": "cluster"},
			"labels":      map[string]any{"eventing.knative.dev/broker": b.Name, "eventing.knative.dev/brokerEverything": "true"},
		},
		"spec": spec,
	}}
	created, err := c.createObject(ctx, InMemoryChannelGVR, imc)
	if err != nil {
		return err
	}
	status := map[string]any{
		"observedGeneration": created.GetGeneration(),
		"address":            map[string]any{"name": "http", "url": fmt.Sprintf("http://%s-kn-channel.%s.svc.cluster.local", name, b.Namespace)},
		"conditions":         ready(),
	}
	if brokerDLS != "" {
		status["deadLetterSinkUri"] = brokerDLS
	}
	return c.patchStatus(ctx, InMemoryChannelGVR, b.Namespace, name, status)
}

// patchBrokerStatus writes the Broker's status: the channel annotations the ingress routes by,
// its address, Ready, and its resolved dead-letter sink.
func (c *Cluster) patchBrokerStatus(ctx context.Context, b *Broker, generation int64, dls string) error {
	status := map[string]any{
		"observedGeneration": generation,
		"annotations": map[string]any{
			"knative.dev/channelAddress":    b.ChannelURL,
			"knative.dev/channelKind":       "InMemoryChannel",
			"knative.dev/channelAPIVersion": "messaging.knative.dev/v1",
			"knative.dev/channelName":       channelName(b.Name),
		},
		"address":    map[string]any{"name": "http", "url": b.IngressURL},
		"conditions": ready(),
	}
	if dls != "" {
		status["deadLetterSinkUri"] = dls
	}
	return c.patchStatus(ctx, BrokerGVR, b.Namespace, b.Name, status)
}

// canary is the harness's own receiver behind its own Trigger, added after the given ones: when
// an event of CanaryType crosses ingress, channel and filter, every Trigger before it is known
// to them (informers deliver one resource's changes in order).
type canary struct {
	url  string
	seen atomic.Bool
	srv  *http.Server
}

func newCanary() (*canary, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &canary{url: "http://" + l.Addr().String() + "/"}
	k.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ce-Type") == CanaryType {
			k.seen.Store(true)
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = k.srv.Serve(l) }()
	return k, nil
}

func (k *canary) close() { _ = k.srv.Close() }

// trigger is the canary's Trigger: no delivery of its own, so it also carries the Broker's.
func (k *canary) trigger(ns, broker string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "eventing.knative.dev/v1",
		"kind":       "Trigger",
		"metadata":   map[string]any{"name": canaryTrigger, "namespace": ns},
		"spec": map[string]any{
			"broker":     broker,
			"filter":     map[string]any{"attributes": map[string]any{"type": CanaryType}},
			"subscriber": map[string]any{"ref": map[string]any{"apiVersion": "v1", "kind": "Service", "name": canaryTrigger}},
		},
	}}
}

// await posts canary events to the ingress until one reaches the receiver.
func (k *canary) await(ctx context.Context, ingress string, timeout time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for n := 0; !k.seen.Load(); n++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("canary event not delivered within %s (last ingress answer: %s): %w", timeout, last, errTimeout)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ingress, nil)
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", fmt.Sprintf("canary-%d-%d", time.Now().UnixNano(), n))
		req.Header.Set("Ce-Source", "localcluster")
		req.Header.Set("Ce-Type", CanaryType)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			last = resp.Status
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
