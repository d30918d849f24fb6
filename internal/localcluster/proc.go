package localcluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// proc is one child process of the stack. It runs in its own process group
// so that Stop can signal it (and anything it forked) as a whole.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // exit error, valid after done is closed
	grace   time.Duration // SIGTERM -> SIGKILL
}

// startProc starts bin with args and env (appended to the current
// environment), stdout+stderr appended to <logDir>/<name>.log.
func startProc(logDir, name, bin string, args, env []string, grace time.Duration) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "### %s: %s %q\n", time.Now().UTC().Format(time.RFC3339), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the Go process that owns the stack dies without calling Stop
		// (SIGKILL, panic in another goroutine, test timeout), the kernel
		// kills the children. (Bound to the OS thread that forked; good
		// enough as a safety net, Stop is the real mechanism.)
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, log: f, done: make(chan struct{}), grace: grace}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after the grace
// period, and waits for the process to be reaped. Safe to call repeatedly.
func (p *proc) stop() {
	if p == nil {
		return
	}
	pgid := p.pid()
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(p.grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Leftovers in the group (none expected): kill them too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// exitErr describes how a process ended, for error messages.
func (p *proc) exitErr() error {
	if !p.exited() {
		return nil
	}
	if p.err == nil {
		return fmt.Errorf("%s exited (see %s)", p.name, p.logPath)
	}
	return fmt.Errorf("%s exited: %v (see %s)", p.name, p.err, p.logPath)
}

// FreePort returns a currently unused TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portInUse reports whether something accepts connections on port (any
// local address).
func portInUse(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var errTimeout = errors.New("timed out")
