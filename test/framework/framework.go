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
// Package framework runs the federations of tests on the library
// test/framework/loopback, which also runs make local-up's. What it adds is
// what only tests want: a federation per test, stopped when the test ends,
// with its logs kept when it failed; fedmesh's commands built from the
// working tree once per test process, so a test never runs a stale binary;
// and the syncer's short leases and retry delays, so that a test watches a
// hand-over or a retry in seconds. A server that dies stays down, as tests
// that kill one expect.
package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedmesh/fedmesh/test/framework/loopback"
)

type (
	// Options say what a federation is made of.
	Options = loopback.Options
	// Federation is a running set of clusters.
	Federation = loopback.Federation
	// Cluster is one kube-apiserver of a federation, with its
	// kube-controller-manager.
	Cluster = loopback.Cluster
	// Syncer is one fedmesh-syncer process of a federation.
	Syncer = loopback.Syncer
)

// SyncerLease is the namespace/name of the syncers' Lease.
const SyncerLease = loopback.SyncerLease

// syncerArgs make fedmesh-syncer quick enough to watch in a test: a lost
// leader is replaced in seconds, a failed write is retried within 2s, a
// member that does not answer is given up on after 5s, and a departed
// member's cleanup is bounded. -v=2 logs what tests read in its log.
var syncerArgs = []string{
	"--leader-elect-lease-duration=3s",
	"--leader-elect-renew-deadline=2s",
	"--leader-elect-retry-period=500ms",
	"--max-retry-delay=2s",
	"--member-timeout=5s",
	"--cleanup-timeout=30s",
	"-v=2",
}

// Start starts a federation for a test and stops it when the test ends,
// keeping every process's log under _output/test-logs/<test> if it failed.
func Start(t testing.TB, opts Options) *Federation {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real kube-apiservers and etcd; run without -short (make test does)")
	}
	// fedmesh is built first, out of the start-up's time: on a busy
	// machine the build alone can take minutes.
	if !opts.WithoutFedmesh && opts.FedmeshBinDir == "" {
		dir, err := fedmeshBinaries()
		if err != nil {
			t.Fatalf("starting federation: %v", err)
		}
		opts.FedmeshBinDir = dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := New(ctx, opts)
	if f != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if dir, err := f.KeepLogs(t.Name()); err == nil {
					t.Logf("logs of every process kept in %s", dir)
				}
			}
			f.Stop()
		})
	}
	if err != nil {
		t.Fatalf("starting federation: %v", err)
	}
	return f
}

// New starts a federation as Start does, for a caller that stops it
// itself, also when New fails and returns a partial one.
func New(ctx context.Context, opts Options) (*Federation, error) {
	if !opts.WithoutFedmesh && opts.FedmeshBinDir == "" {
		dir, err := fedmeshBinaries()
		if err != nil {
			return nil, err
		}
		opts.FedmeshBinDir = dir
	}
	opts.SyncerArgs = append(append([]string{}, syncerArgs...), opts.SyncerArgs...)
	return loopback.New(ctx, opts)
}

// RepoRoot returns the root of the fedmesh module the tests run in.
func RepoRoot() (string, error) { return loopback.RepoRoot() }

// Binary returns the path of a test binary built by
// hack/install-test-binaries.sh (etcd, kube-apiserver,
// kube-controller-manager, kubectl).
func Binary(name string) (string, error) { return loopback.Binary(name) }

// FedmeshBinary returns the path of one of fedmesh's own commands, such as
// kubectl-fedmesh, built from the working tree once per test process. Its
// directory can go on a PATH, for kubectl to find a plugin there.
func FedmeshBinary(name string) (string, error) {
	dir, err := fedmeshBinaries()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no command %s among fedmesh's (./cmd/...): %w", name, err)
	}
	return p, nil
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Main is the TestMain of a package whose tests start federations: it runs
// the tests and removes what the framework built for them.
func Main(m interface{ Run() int }) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// fedmeshBinaries builds fedmesh's own commands once per test process, from
// the working tree, so a test never runs a stale binary.
func fedmeshBinaries() (string, error) {
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "fedmesh-bin")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building fedmesh: %v\n%s", err, out)
		}
	})
	return buildDir, buildErr
}
