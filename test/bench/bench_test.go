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
package bench

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedmesh/fedmesh/test/framework"
)

// The defaults are the small configuration make test runs, so the bench
// never rots; make bench passes the full one. Its figures are reported,
// not asserted: targets are read off the table, next to their peers.
var (
	members      = flag.Int("members", 2, "member clusters")
	exports      = flag.Int("exports", 200, "exports in total, each with its Service, spread over the members")
	listRuns     = flag.Int("list-runs", 10, "timed runs of each LIST")
	watchSamples = flag.Int("watch-samples", 20, "exports timed to their watch event")
	readySamples = flag.Int("ready-samples", 5, "Cluster registrations timed to Ready")
	writers      = flag.Int("writers", 32, "clients populating in parallel")
	limitWriters = flag.Int("limit-writers", 64, "goroutines of the plain create loop that measures a member's write limit")
	output       = flag.String("output", "", "where to write results.json (default _output/bench/results.json)")
	heapProfile  = flag.Bool("heap-profile", false, "also save fedmesh-apiserver's heap profile beside results.json")
	cpuProfiles  = flag.Bool("cpu-profiles", false, "also save CPU profiles of the syncer and of the member it writes into during the late joiner's fan-out, beside results.json")
)

func TestMain(m *testing.M) {
	framework.Main(m)
}

func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real kube-apiservers and etcd; run without -short (make test does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	path := *output
	if path == "" {
		root, err := framework.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(root, "_output", "bench", "results.json")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Members: *members, Exports: *exports, ListRuns: *listRuns,
		WatchSamples: *watchSamples, ReadySamples: *readySamples, Writers: *writers,
		LimitWriters: *limitWriters,
	}
	if *cpuProfiles {
		cfg.ProfileDir = filepath.Dir(path)
	}
	if *heapProfile {
		cfg.HeapProfile = filepath.Join(filepath.Dir(path), "heap.pprof")
	}
	res, err := Run(ctx, cfg, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	res.Table(os.Stdout)
	if err := res.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	t.Logf("results written to %s", path)
}
