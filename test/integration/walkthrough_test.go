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

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/loopback"
	"github.com/fedmesh/fedmesh/test/framework/netns"
	"github.com/fedmesh/fedmesh/test/framework/walkthrough"
)

var walkthroughMembers = []string{"cluster-1", "cluster-2", "cluster-3"}

// startWalkthrough starts the walkthrough's federation as make local-up
// does: three members joined by kubectl fedmesh join, each with its
// gateway at its fedmesh-gateway's ingress listener, a fedmesh-gateway per
// member as the identity join makes, and httpbin deployed in cluster-1 and
// cluster-3, with backends in network namespaces. It skips where network
// namespaces cannot be made.
func startWalkthrough(t *testing.T) (*framework.Federation, *walkthrough.Env) {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	f := framework.Start(t, framework.Options{Members: walkthroughMembers, WithSyncer: true, WithoutMemberCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	kubectl, err := framework.Binary("kubectl")
	require.NoError(t, err)
	plugin, err := framework.FedmeshBinary("kubectl-fedmesh")
	require.NoError(t, err)
	ingress := map[string]int{}
	for _, m := range walkthroughMembers {
		ingress[m] = freeLoopbackPort(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(walkthroughMembers))
	outs := make([][]byte, len(walkthroughMembers))
	for i, m := range walkthroughMembers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, kubectl, "fedmesh", "join", m,
				"--kubeconfig="+f.ControlPlane.KubeconfigPath,
				"--member-kubeconfig="+f.Member(m).KubeconfigPath,
				"--gateway-host=127.0.0.1", "--gateway-port="+strconv.Itoa(ingress[m]),
				"--wait", "--timeout=60s")
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(plugin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i, m := range walkthroughMembers {
		require.NoError(t, errs[i], "kubectl fedmesh join %s:\n%s", m, outs[i])
	}

	env := &walkthrough.Env{
		Kubectl:      kubectl,
		ControlPlane: f.ControlPlane.KubeconfigPath,
		Members:      map[string]string{},
		Egress:       map[string]string{},
		Log:          t.Logf,
	}
	env.Root, err = framework.RepoRoot()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, env.Close()) })
	for _, m := range walkthroughMembers {
		g, err := f.StartGateway(ctx, f.Member(m), walkthrough.Key(m), loopback.GatewayPorts{Ingress: ingress[m]}, "-v=2")
		require.NoError(t, err, "fedmesh-gateway of %s", m)
		env.Members[m] = f.Member(m).KubeconfigPath
		env.Egress[m] = g.EgressAddr()
	}
	for _, m := range []string{"cluster-1", "cluster-3"} {
		_, err := env.DeployHTTPBin(ctx, m)
		require.NoError(t, err, "httpbin of %s", m)
	}
	return f, env
}

// TestWalkthrough replays the Flomesh walkthrough through the egress proxy
// of cluster-2's gateway, as make demo does against local-up, and asserts
// the walkthrough's results: no route (a 503 that says why) under
// Locality, cluster-1 and cluster-3 under FailOver, cluster-2 alone once
// it has httpbin, all three under ActiveActive. Then it kills cluster-2's
// backend under FailOver: the requests move to cluster-1 and cluster-3 at
// once, none failing, and come back once it serves again.
func TestWalkthrough(t *testing.T) {
	_, env := startWalkthrough(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("the walkthrough's results", func(t *testing.T) {
		for _, step := range walkthrough.Steps() {
			require.NoError(t, step.Do(ctx, env), step.Title)
			r := env.Await(ctx, step.Expect, 6, 30*time.Second)
			require.True(t, r.OK, "%s: %s; last round: %v", step.Title, r.Why, r.Results)
			t.Logf("%s: as the walkthrough after %s (%d rounds)", step.Title, r.Elapsed.Round(time.Millisecond), r.Rounds)
		}
	})

	t.Run("FailOver when cluster-2's backend dies", func(t *testing.T) {
		require.NoError(t, env.Apply(ctx, "", walkthrough.Namespace, "gtp-failover.yaml"))
		local := walkthrough.Expectation{Serving: []string{"cluster-2"}}
		r := env.Await(ctx, local, 6, 30*time.Second)
		require.True(t, r.OK, "cluster-2 serves alone under FailOver: %s", r.Why)

		b := env.Backend("cluster-2")
		b.Kill()
		// Every request from the kill on is served by the second tier:
		// the refused connection ejects the backend, and the request that
		// met it is sent on, as no byte of it had left.
		remote := walkthrough.Expectation{Serving: []string{"cluster-1", "cluster-3"}}
		var rs []walkthrough.Result
		for range 20 {
			rs = append(rs, walkthrough.Curl(ctx, env.Egress[walkthrough.Client], walkthrough.URL))
		}
		ok, why := remote.Met(rs)
		assert.True(t, ok, "right after cluster-2's backend died: %s; results: %v", why, rs)

		require.NoError(t, b.Start())
		r = env.Await(ctx, local, 6, 45*time.Second)
		assert.True(t, r.OK, "cluster-2 serves again once its backend is back: %s; last round: %v", r.Why, r.Results)
		t.Logf("cluster-2 served again %s after its backend came back", r.Elapsed.Round(time.Millisecond))
	})
}
