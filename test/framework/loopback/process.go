/*
Copyright The fedmesh Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

	http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// gracePeriod is how long a gentle process has to exit on SIGTERM
	// before it is killed. etcd, fedmesh-apiserver and fedmesh-syncer
	// take well under a second.
	gracePeriod = 5 * time.Second

	// The back-off between restarts of a process that keeps exiting, as
	// the kubelet's CrashLoopBackOff but shorter, for a machine where a
	// developer waits on it: it doubles from restartDelay up to
	// maxRestartDelay, and starts over once a run lasted
	// restartResetAfter.
	restartDelay      = time.Second
	maxRestartDelay   = 30 * time.Second
	restartResetAfter = time.Minute
)

// process is one server of a federation: its command line, its log, how to
// stop it and, when the federation restarts what dies, its supervision.
type process struct {
	name    string
	binary  string
	args    []string
	logPath string
	// gentle processes get SIGTERM before SIGKILL; kube-apiservers do not,
	// since they drain for up to a minute on SIGTERM and nothing here needs
	// that.
	gentle bool
	// restart starts the process again, after a back-off, whenever it exits
	// without being asked to, as a Deployment's pod is restarted.
	restart bool
	// say reports the restarts; never nil.
	say func(format string, args ...any)

	mu sync.Mutex
	// cmd is the current run and done is closed when it has ended.
	cmd  *exec.Cmd
	done chan struct{}
	// halted is closed when the process is being stopped: no run starts
	// after that. supervised is closed when the goroutine that watches the
	// runs has returned.
	halted     chan struct{}
	supervised chan struct{}
	// runs counts the runs since start, restarts included, so that a wait
	// notices a process that died and came back.
	runs    int
	started time.Time
}

// start runs the process and supervises it until stop or kill.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.supervised != nil && !isClosed(p.supervised) {
		return fmt.Errorf("%s is already running", p.name)
	}
	p.halted, p.runs = make(chan struct{}), 0
	if err := p.launchLocked(""); err != nil {
		return err
	}
	p.supervised = make(chan struct{})
	go p.supervise(p.halted, p.supervised)
	return nil
}

// launchLocked starts one run, its output appended to the log after a line
// that says when and how it started.
func (p *process) launchLocked(note string) error {
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "\n=== %s:%s %s %v\n", time.Now().Format(time.RFC3339Nano), note, p.binary, p.args)
	cmd := exec.Command(p.binary, p.args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that the Ctrl-C of a terminal or a signal
	// to the test reaches the caller only, which then stops everything in
	// order. Pdeathsig takes the process down with a caller that dies
	// without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startFromSpawner(cmd); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.runs++
	p.started = time.Now()
	return nil
}

// supervise waits for each run to end and, unless the process is halted
// or is not to be restarted, starts the next one after the back-off.
func (p *process) supervise(halted, supervised chan struct{}) {
	defer close(supervised)
	var (
		delay     time.Duration
		launchErr error
	)
	for restarts := 1; ; restarts++ {
		p.mu.Lock()
		cmd, done, started := p.cmd, p.done, p.started
		p.mu.Unlock()
		why := fmt.Sprintf("%s could not start (%v)", p.name, launchErr)
		if cmd != nil {
			select {
			case <-done:
			case <-halted:
				return
			}
			why = fmt.Sprintf("%s (pid %d) exited (%s)", p.name, cmd.Process.Pid, exitStatus(cmd))
		}
		if isClosed(halted) || !p.restart {
			return
		}
		if delay == 0 || time.Since(started) >= restartResetAfter {
			delay = restartDelay
		} else {
			delay = min(2*delay, maxRestartDelay)
		}
		p.say("%s; restarting in %s (restart %d); log: %s", why, delay, restarts, p.logPath)
		select {
		case <-time.After(delay):
		case <-halted:
			return
		}
		p.mu.Lock()
		if isClosed(halted) {
			p.mu.Unlock()
			return
		}
		if launchErr = p.launchLocked(fmt.Sprintf(" restart %d:", restarts)); launchErr != nil {
			// Counts as a run that ended at once: the next attempt comes
			// after a longer back-off.
			p.cmd, p.done, p.started = nil, nil, time.Now()
		} else {
			p.say("%s restarted (pid %d)", p.name, p.cmd.Process.Pid)
		}
		p.mu.Unlock()
	}
}

// exitStatus says how a run ended, as "status 2" or "signal killed".
func exitStatus(cmd *exec.Cmd) string {
	ps := cmd.ProcessState
	if ps == nil {
		return "did not start"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "status " + strconv.Itoa(ps.ExitCode())
}

// run identifies the current run: it changes when the process restarts.
func (p *process) run() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// exited reports whether the process is not running now: it has ended by
// itself (and may be about to restart), or was never started or stopped.
func (p *process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done == nil || isClosed(p.done)
}

// pid is the process id of the running process, or 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// halt stops the supervision without stopping the process: nothing it does
// from now on restarts it. Stopping a federation halts every process first,
// so that none is restarted because another it depends on went first.
func (p *process) halt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.halted != nil && !isClosed(p.halted) {
		close(p.halted)
	}
}

// stop stops the process, gently if it is gentle, and its supervision.
func (p *process) stop() { p.terminate(p.gentle) }

// kill kills the process at once, as a crash would, whether or not it is
// gentle; it is not restarted.
func (p *process) kill() { p.terminate(false) }

func (p *process) terminate(gentle bool) {
	p.halt()
	p.mu.Lock()
	cmd, done, supervised := p.cmd, p.done, p.supervised
	p.mu.Unlock()
	if cmd != nil && !isClosed(done) {
		if gentle {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(gracePeriod):
			}
		}
		_ = cmd.Process.Kill()
		<-done
	}
	if supervised != nil {
		<-supervised
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ProcessError is the failure of a server to start or to become ready; Log
// is where its output is, for a caller to show.
type ProcessError struct {
	Name string
	Log  string
	Err  error
}

func (e *ProcessError) Error() string {
	return fmt.Sprintf("%s: %v (log: %s)", e.Name, e.Err, e.Log)
}

func (e *ProcessError) Unwrap() error { return e.Err }

// errExited is the error of a wait whose process ended.
var errExited = errors.New("exited")

// Ports are handed out from below Linux's ephemeral range. A port in that
// range, free when checked, may be taken before the server binds it by
// the local end of any outgoing connection (the kube-apiservers' own, to
// etcd, come by the thousand) or by a listener on port 0; a port below it
// is taken only by an explicit bind. So a server whose port was picked
// long before it starts (a gateway's ingress port, which its Cluster names
// at join) still gets it. Ports are picked at random, so that test
// binaries running side by side rarely try the same one, and never twice
// by one process.
const (
	portsFrom = 10000
	// portsTo leaves local-up's default ports, 22379 and up, alone.
	portsTo = 22000
)

var picked = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a loopback port nobody listens on now, from below the
// ephemeral range. Another test process may still bind it first; callers
// retry start-up on a new port when their server fails to bind.
func freePort() (int, error) {
	from, to := portsFrom, min(portsTo, ephemeralFrom())
	if to-from < 1000 {
		// The ephemeral range reaches down to here: take one of it.
		return anyPort()
	}
	picked.Lock()
	defer picked.Unlock()
	for range 200 {
		p := from + rand.IntN(to-from)
		if picked.ports[p] {
			continue
		}
		l, err := net.Listen("tcp", hostPort(p))
		if err != nil {
			continue
		}
		l.Close()
		picked.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d after 200 tries", from, to-1)
}

// FreePort is freePort, for callers that must name a port before its
// server starts.
func FreePort() (int, error) { return freePort() }

// ephemeralFrom is the first port of Linux's ephemeral range, or 32768,
// its default, where that cannot be read.
func ephemeralFrom() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// anyPort asks the kernel for a port, from the ephemeral range.
func anyPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func copyDir(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if filepath.Ext(path) != ".log" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// startFromSpawner starts cmd from the spawner, one OS thread that lives
// as long as the caller. The kernel sends a child its Pdeathsig when the
// thread that forked it ends, not the process (prctl(2)); the Go runtime
// ends a thread whenever a goroutine exits locked to it, as one that
// entered a network namespace may (netns), so a child forked from an
// ordinary goroutine's thread could be killed at any moment.
func startFromSpawner(cmd *exec.Cmd) error {
	spawnerOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			// Never unlocked, and never returns: the thread is the
			// parent of every process started here.
			runtime.LockOSThread()
			for s := range spawns {
				s.done <- s.cmd.Start()
			}
		}()
	})
	s := spawn{cmd: cmd, done: make(chan error, 1)}
	spawns <- s
	return <-s.done
}

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnerOnce sync.Once
	spawns      chan spawn
)
