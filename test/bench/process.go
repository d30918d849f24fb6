//go:build e2e

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fnProcess is the function binary (cmd/argo-disruption-handler, func-go's runtime) running as
// its own process.
type fnProcess struct {
	cmd   *exec.Cmd
	URL   string
	Log   string
	Start time.Time // just before exec
	done  chan struct{}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// execFunction starts the binary; it does not wait for anything.
func execFunction(bin, kubeconfig, logPath string, env map[string]string) (*fnProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
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
	p := &fnProcess{cmd: cmd, URL: "http://" + addr + "/", Log: logPath, done: make(chan struct{})}
	p.Start = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// waitReady polls /health/readiness every millisecond; it returns when the first HTTP answer
// came (the server listens) and when readiness said 200.
func (p *fnProcess) waitReady(timeout time.Duration) (listening, ready time.Time, err error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return listening, ready, fmt.Errorf("function exited; see %s", p.Log)
		default:
		}
		resp, err := client.Get(p.URL + "health/readiness")
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
		time.Sleep(time.Millisecond)
	}
	return listening, ready, fmt.Errorf("function not ready after %s; see %s", timeout, p.Log)
}

// post replays a captured request to the function and returns the status.
func (p *fnProcess) post(ctx context.Context, r rawRequest) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(r.Body))
	if err != nil {
		return 0, err
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Del("Content-Length")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (p *fnProcess) pid() int { return p.cmd.Process.Pid }

// stop ends the function (SIGTERM, SIGKILL after 5 s).
func (p *fnProcess) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// memory is VmRSS and VmHWM of a process, in bytes.
type memory struct{ RSS, HWM int64 }

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			m.RSS = kb * 1024
		case "VmHWM:":
			m.HWM = kb * 1024
		}
	}
	return m, sc.Err()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
