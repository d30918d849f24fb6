//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"function/internal/localcluster"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/scenario"
)

// TestPodGCRace puts a proxy between the Argo controller and the API server that delays every
// pod watch event by ADH_E2E_RACE_DELAY (default 2 s) and holds back each pod deletion a further
// ADH_E2E_RACE_STALL (default 3 s), in order — a controller whose pod informer lags, as on a busy
// production API server during a mass node loss, and reconciles between PodGC's Failed update
// and the deletion that follows it (with a uniform delay alone both arrive together, and the
// window is milliseconds) — and runs scenario d with the status
// finalizer on, on each version of ADH_E2E_RACE_ARGO (default "v3.6.18 v3.7.18"): kwok stops, the
// Nodes are deleted, PodGC sets the pods Failed over running containers and deletes them. The
// function must never let such a step end Succeeded: it completes the task result only once the
// Workflow shows the controller saw the pod go. ADH_E2E_RACE_RUNS (default 2) workflows run at
// once per version. ADH_E2E_RACE_FUNCTION runs another build of the function (e.g. one from
// before that rule, to measure how often it let the step succeed); its outcomes are then
// reported, not asserted.
func TestPodGCRace(t *testing.T) {
	versions := strings.Fields(env("ADH_E2E_RACE_ARGO", "v3.6.18 v3.7.18"))
	delay, err := time.ParseDuration(env("ADH_E2E_RACE_DELAY", "2s"))
	if err != nil {
		t.Fatal(err)
	}
	stall, err := time.ParseDuration(env("ADH_E2E_RACE_STALL", "3s"))
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := strconv.Atoi(env("ADH_E2E_RACE_RUNS", "2"))
	other := os.Getenv("ADH_E2E_RACE_FUNCTION")
	for _, version := range versions {
		t.Run(version, func(t *testing.T) {
			ctx := context.Background()
			bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: runs, NoArgo: true}, 90*time.Second)
			if other != "" {
				bin = other
			}
			proxy := newPodWatchDelay(t, c.RESTConfig(), delay, stall)
			c.SetArgoKubeconfig(proxy.kubeconfig(t))
			if err := c.RestartArgo(ctx, version, map[string]string{"ARGO_POD_STATUS_CAPTURE_FINALIZER": "true"}); err != nil {
				t.Fatal(err)
			}
			if err := e.EnsureNamespace(ctx, nsWith); err != nil {
				t.Fatal(err)
			}
			fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_NAMESPACES": nsWith})
			startAdapter(t, c, fn.URL, []string{nsWith}, workflowPods, nodes)
			var dead []scenario.DeadNodeRun
			for i := range runs {
				dead = append(dead, scenario.DeadNodeRun{Mode: scenario.With, Spec: scenario.Spec{Namespace: nsWith, Node: localcluster.NodeName(i)}})
			}
			succeeded := 0
			for _, r := range e.DeadNode(ctx, dead) {
				if r.Err != nil {
					t.Errorf("run: %v", r.Err)
					continue
				}
				t.Logf("Argo %s, pod watch delayed %s (deletions %s more): %s (repair write %s, moved %s)", version, delay, stall, r.Outcome, secs(r.Repair), secs(r.Moved))
				if strings.HasPrefix(r.Outcome, "Succeeded") {
					succeeded++
				}
			}
			t.Logf("Argo %s, pod watch delayed %s (deletions %s more), function %s: %d of %d steps killed with their machine ended Succeeded", version, delay, stall, orCurrent(other), succeeded, runs)
			if other == "" && succeeded > 0 {
				t.Errorf("%d steps killed with their machine ended Succeeded", succeeded)
			}
		})
	}
}

func orCurrent(bin string) string {
	if bin == "" {
		return "this build"
	}
	return bin
}

func secs(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// podWatchDelay is a reverse proxy to the API server that holds back every pod watch event by
// a fixed delay, and each DELETED event a stall more, in order; everything else passes through
// at once.
type podWatchDelay struct {
	srv *httptest.Server
}

var podWatchPath = regexp.MustCompile(`^/api/v1/(namespaces/[^/]+/)?pods$`)

func newPodWatchDelay(t *testing.T, admin *rest.Config, delay, stall time.Duration) *podWatchDelay {
	t.Helper()
	rp, err := apitap.ReverseProxy(admin)
	if err != nil {
		t.Fatal(err)
	}
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true" && podWatchPath.MatchString(r.URL.Path) {
			resp.Body = newDelayedBody(resp.Body, delay, stall)
		}
		return nil
	}
	p := &podWatchDelay{srv: httptest.NewServer(rp)}
	t.Cleanup(func() {
		// The controller's watches never end by themselves: Close alone would wait for them.
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

// kubeconfig writes a kubeconfig that reaches the API server through the proxy (which adds the
// admin credentials).
func (p *podWatchDelay) kubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "argo-kubeconfig")
	if err := localcluster.WriteKubeconfig(path, p.srv.URL, nil, ""); err != nil {
		t.Fatal(err)
	}
	return path
}

// delayedBody hands out the watch events the upstream body delivered (JSON, one per line), each
// no earlier than delay after it arrived, a DELETED one a stall later still, in order.
type delayedBody struct {
	upstream     io.ReadCloser
	events       chan watchEvent
	delay, stall time.Duration
	rest         []byte
}

type watchEvent struct {
	line []byte
	at   time.Time
	err  error
}

func newDelayedBody(upstream io.ReadCloser, delay, stall time.Duration) *delayedBody {
	b := &delayedBody{upstream: upstream, events: make(chan watchEvent, 4096), delay: delay, stall: stall}
	go func() {
		defer close(b.events)
		r := bufio.NewReaderSize(upstream, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				b.events <- watchEvent{line: line, at: time.Now()}
			}
			if err != nil {
				b.events <- watchEvent{err: err, at: time.Now()}
				return
			}
		}
	}()
	return b
}

var deletedEvent = []byte(`"type":"DELETED"`)

func (b *delayedBody) Read(p []byte) (int, error) {
	if len(b.rest) == 0 {
		ev, ok := <-b.events
		if !ok {
			return 0, io.EOF
		}
		wait := time.Until(ev.at.Add(b.delay))
		if bytes.Contains(ev.line, deletedEvent) {
			wait = max(wait, 0) + b.stall
		}
		time.Sleep(wait)
		if ev.err != nil {
			return 0, ev.err
		}
		b.rest = ev.line
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

func (b *delayedBody) Close() error { return b.upstream.Close() }
