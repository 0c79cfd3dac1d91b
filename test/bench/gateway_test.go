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
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/netns"
)

// The defaults are the small configuration make test runs; make bench
// passes the full one.
var (
	gatewayLatencySamples = flag.Int("gateway-latency-samples", 200, "requests timed directly and through the gateway, each")
	gatewayRPSSeconds     = flag.Float64("gateway-rps-seconds", 2, "seconds of each throughput run")
	gatewayRPSClients     = flag.Int("gateway-rps-clients", 8, "clients of each throughput run")
	gatewayTrials         = flag.Int("gateway-failover-trials", 2, "timed failovers of each kind")
	gatewayProfile        = flag.Bool("gateway-profile", false, "save the consumer gateway's CPU profile of the throughput run beside results.json")
)

// TestBenchGateway measures fedmesh-gateway on a real federation and adds
// its figures to results.json (written by TestBench when both run).
func TestBenchGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real kube-apiservers and etcd; run without -short (make test does)")
	}
	if err := netns.Available(); errors.Is(err, netns.ErrNeedRoot) {
		t.Skipf("the backends run in network namespaces: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
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
	cfg := GatewayConfig{LatencySamples: *gatewayLatencySamples, ThroughputSeconds: *gatewayRPSSeconds,
		ThroughputClients: *gatewayRPSClients, FailoverTrials: *gatewayTrials}
	if *gatewayProfile {
		cfg.Profile = filepath.Join(filepath.Dir(path), "gateway-cpu.pprof")
	}
	res, err := RunGateway(ctx, cfg, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	res.Table(os.Stdout)
	if err := res.MergeJSON(path); err != nil {
		t.Fatal(err)
	}
	t.Logf("results added to %s", path)
}
