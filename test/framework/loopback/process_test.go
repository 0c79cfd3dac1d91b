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
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// said collects what a process reports.
type said struct {
	mu    sync.Mutex
	lines []string
}

func (s *said) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
}

func (s *said) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func shell(t *testing.T, script string, restart bool, s *said) *process {
	return &process{
		name: "sh", binary: "/bin/sh", args: []string{"-c", script},
		logPath: filepath.Join(t.TempDir(), "sh.log"), restart: restart, say: s.say,
	}
}

func TestProcessRestartsWithBackOff(t *testing.T) {
	s := &said{}
	p := shell(t, "exit 2", true, s)
	require.NoError(t, p.start())
	defer p.stop()
	require.Eventually(t, func() bool { return strings.Contains(s.String(), "restart 2") }, 10*time.Second, 20*time.Millisecond)
	out := s.String()
	assert.Regexp(t, `sh \(pid \d+\) exited \(status 2\); restarting in 1s \(restart 1\); log: `, out)
	assert.Regexp(t, `sh restarted \(pid \d+\)`, out)
	assert.Contains(t, out, "restarting in 2s (restart 2)", "the back-off doubles while the process keeps exiting")
	assert.Greater(t, p.run(), 1)

	p.stop()
	before := s.String()
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, before, s.String(), "a stopped process is not restarted")
	assert.Zero(t, p.pid())
}

func TestProcessStopIsNoCrash(t *testing.T) {
	s := &said{}
	p := shell(t, "exec sleep 60", true, s)
	require.NoError(t, p.start())
	pid := p.pid()
	require.NotZero(t, pid)
	start := time.Now()
	p.stop()
	assert.Less(t, time.Since(start), gracePeriod, "sleep ends on SIGTERM")
	assert.Empty(t, s.String(), "stopping is not reported as an exit")
	assert.True(t, p.exited())

	require.NoError(t, p.start(), "a stopped process starts again")
	assert.NotEqual(t, pid, p.pid())
	p.kill()
	assert.Empty(t, s.String())
}

func TestProcessStaysDownWithoutRestart(t *testing.T) {
	s := &said{}
	p := shell(t, "exit 3", false, s)
	require.NoError(t, p.start())
	require.Eventually(t, p.exited, 5*time.Second, 20*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, 1, p.run(), "not restarted")
	assert.Empty(t, s.String())
	require.NoError(t, p.start(), "a process that ended by itself can be started again")
	p.stop()
}

func TestBrief(t *testing.T) {
	readyz := errors.New(`an error on the server ("[+]ping ok\n[-]informer-sync failed: reason withheld\n` +
		`[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed") has prevented the request from succeeding`)
	assert.Equal(t, "not ready: informer-sync, rbac/bootstrap-roles", brief(readyz))
	many := errors.New(`("[-]a failed: x\n[-]b failed: x\n[-]c failed: x\n[-]d failed: x\n[-]e failed: x\nreadyz check failed")`)
	assert.Equal(t, "not ready: a, b, c, and 2 more", brief(many))
	assert.Equal(t, "first", brief(errors.New("first\nsecond")))
	assert.Len(t, brief(errors.New(strings.Repeat("x", 300))), 203)
}

func TestWaitForGivesUpOnAProcessThatKeepsExiting(t *testing.T) {
	notReady := func(context.Context) error { return errors.New("not ready") }
	f := &Federation{opts: Options{ReadyTimeout: time.Minute}}

	s := &said{}
	p := shell(t, "exit 1", false, s)
	require.NoError(t, p.start())
	err := f.waitFor(context.Background(), p, "sh", notReady)
	var pe *ProcessError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "sh: exited (log: "+p.logPath+")", err.Error(), "without restarts, the first exit fails the wait")

	// With restarts, a process gets startupRuns runs to become ready.
	p = shell(t, "exit 1", true, s)
	require.NoError(t, p.start())
	defer p.stop()
	start := time.Now()
	err = f.waitFor(context.Background(), p, "sh", notReady)
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), fmt.Sprintf("exited %d times", startupRuns))
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Contains(t, s.String(), "restart 2")

	ready := false
	p = shell(t, "exit 1", true, s)
	require.NoError(t, p.start())
	defer p.stop()
	err = f.waitFor(context.Background(), p, "sh", func(context.Context) error {
		if p.run() > 1 {
			ready = true
			return nil
		}
		return errors.New("not ready")
	})
	assert.NoError(t, err, "a process that comes back and works is ready")
	assert.True(t, ready)
}

// TestFreePortIsBelowTheEphemeralRange: the ports handed out are never the
// ones an outgoing connection or a listener on port 0 can take, never
// handed out twice, and bindable.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	to := min(portsTo, ephemeralFrom())
	if to-portsFrom < 1000 {
		t.Skipf("this machine's ephemeral range starts at %d: freePort falls back to it", ephemeralFrom())
	}
	seen := map[int]bool{}
	for range 100 {
		p, err := freePort()
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, portsFrom)
		require.Less(t, p, to)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
	}
	for p := range seen {
		l, err := net.Listen("tcp", hostPort(p))
		require.NoError(t, err, "port %d", p)
		l.Close()
	}
}
