// Package scenario runs the disruptions that matter against the real Argo workflow-controller on
// the local control plane (localcluster), with and without the function, and measures what
// happens. It is used by the e2e matrix (test/e2e/matrix_test.go) and the demo (cmd/demo). It
// also runs the function for the other e2e tests and the benchmarks (test/bench): as its own
// process (Function) or built in the caller's process (InProcess).
package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"function/internal/localcluster"
)

// Function is the function running as its own process, exactly as users run it locally:
// cmd/argo-disruption-handler on func-go's runtime.
type Function struct {
	URL     string
	LogPath string
	// Started is just before the exec.
	Started time.Time
	cmd     *exec.Cmd
	done    chan struct{}
}

// BuildFunction builds cmd/argo-disruption-handler from the repository at root into dir.
func BuildFunction(ctx context.Context, root, dir string) (string, error) {
	if other := os.Getenv("ADH_E2E_FUNCTION"); other != "" {
		// Another build of the function (the image func builds, an older commit): run as is.
		return other, nil
	}
	bin := filepath.Join(dir, "argo-disruption-handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/argo-disruption-handler")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the function: %v\n%s", err, out)
	}
	return bin, nil
}

// StartFunction runs bin against kubeconfig with the given ADH_* settings (debug logs and
// metrics on a free port unless they say otherwise), and waits until /health/readiness answers
// 200.
func StartFunction(ctx context.Context, bin, kubeconfig, logPath string, env map[string]string) (*Function, error) {
	// Metrics on a free port (several functions may run at once); MetricsURL finds it in the log.
	settings := map[string]string{"ADH_LOG_LEVEL": "debug", "ADH_METRICS_ADDRESS": "127.0.0.1:0"}
	for k, v := range env {
		settings[k] = v
	}
	f, err := ExecFunction(bin, kubeconfig, logPath, settings)
	if err != nil {
		return nil, err
	}
	if _, _, err := f.WaitReady(ctx, 20*time.Second, 20*time.Millisecond); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// ExecFunction starts bin against kubeconfig on a free loopback port with the given environment
// added, its output in logPath; it does not wait for anything.
func ExecFunction(bin, kubeconfig, logPath string, env map[string]string) (*Function, error) {
	port, err := localcluster.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "LISTEN_ADDRESS="+addr)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	f := &Function{URL: "http://" + addr + "/", LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	f.Started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(f.done) }()
	return f, nil
}

// WaitReady polls /health/readiness every interval until it answers 200, and returns when the
// first HTTP answer came (the server listens) and when readiness did.
func (f *Function) WaitReady(ctx context.Context, timeout, interval time.Duration) (listening, ready time.Time, err error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-f.done:
			return listening, ready, fmt.Errorf("function exited at start; see %s", f.LogPath)
		default:
		}
		resp, err := client.Get(f.URL + "health/readiness")
		if err == nil {
			resp.Body.Close()
			now := time.Now()
			if listening.IsZero() {
				listening = now
			}
			if resp.StatusCode == http.StatusOK {
				return listening, now, nil
			}
		}
		time.Sleep(interval)
	}
	return listening, ready, fmt.Errorf("function not ready after %s; see %s", timeout, f.LogPath)
}

// PID is the function's process ID.
func (f *Function) PID() int { return f.cmd.Process.Pid }

// Stop ends the function (SIGTERM, then SIGKILL of its process group).
func (f *Function) Stop() {
	if f == nil || f.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		<-f.done
	}
}

// LogEntry is one line of the function's JSON log: when, and its fields.
type LogEntry struct {
	At     time.Time
	Fields map[string]any
}

// Field is a string field of the entry ("" when absent).
func (e LogEntry) Field(key string) string {
	v, _ := e.Fields[key].(string)
	return v
}

// LogEntries returns the function's log lines that contain every part, in order.
func (f *Function) LogEntries(parts ...string) []LogEntry {
	b, err := os.ReadFile(f.LogPath)
	if err != nil {
		return nil
	}
	var out []LogEntry
	for _, line := range strings.Split(string(b), "\n") {
		if !containsAll(line, parts) {
			continue
		}
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) != nil {
			continue
		}
		ts, _ := fields["timestamp"].(string)
		if t, err := time.Parse("2006-01-02T15:04:05.000Z0700", ts); err == nil {
			out = append(out, LogEntry{At: t, Fields: fields})
		}
	}
	return out
}

func containsAll(line string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(line, p) {
			return false
		}
	}
	return true
}

// MetricsURL is the function's /metrics URL, from its "started" log line ("" when off).
func (f *Function) MetricsURL() string {
	b, err := os.ReadFile(f.LogPath)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		var rec struct {
			Msg     string `json:"msg"`
			Metrics string `json:"metrics"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "started" && rec.Metrics != "" && rec.Metrics != "off" {
			return "http://" + rec.Metrics + "/metrics"
		}
	}
	return ""
}

// LogContains reports whether the function's log has a line containing every part.
func (f *Function) LogContains(parts ...string) bool {
	b, err := os.ReadFile(f.LogPath)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if containsAll(line, parts) {
			return true
		}
	}
	return false
}
