// Package scenario runs the disruptions that matter against the real Argo workflow-controller on
// the local control plane (localcluster), with and without the function, and measures what
// happens. It is used by the e2e matrix (test/e2e/matrix_test.go) and the demo (cmd/demo).
package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Function is the function running as its own process, exactly as users run it locally:
// cmd/argo-disruption-handler on func-go's runtime.
type Function struct {
	URL     string
	LogPath string
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

// StartFunction runs bin against kubeconfig with the given ADH_* settings, and waits until
// /health/readiness answers 200.
func StartFunction(ctx context.Context, bin, kubeconfig, logPath string, env map[string]string) (*Function, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	// Metrics on a free port (several functions may run at once); MetricsURL finds it in the log.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "LISTEN_ADDRESS="+addr, "ADH_LOG_LEVEL=debug", "ADH_METRICS_ADDRESS=127.0.0.1:0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	f := &Function{URL: "http://" + addr + "/", LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(f.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-f.done:
			return nil, fmt.Errorf("function exited at start; see %s", logPath)
		default:
		}
		resp, err := http.Get(f.URL + "health/readiness")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.Stop()
	return nil, fmt.Errorf("function not ready after 20s; see %s", logPath)
}

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

// LogTimes returns the timestamps of the function's log lines that contain every part.
func (f *Function) LogTimes(parts ...string) []time.Time {
	b, err := os.ReadFile(f.LogPath)
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, line := range strings.Split(string(b), "\n") {
		if !containsAll(line, parts) {
			continue
		}
		var rec struct {
			Timestamp string `json:"timestamp"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			if t, err := time.Parse("2006-01-02T15:04:05.000Z0700", rec.Timestamp); err == nil {
				out = append(out, t)
			}
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
