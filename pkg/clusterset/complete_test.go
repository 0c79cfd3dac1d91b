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
package clusterset

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A restarted server holds no imports until it has reached its members:
// it is not ready (ImportsComplete) until every member known at the start
// is settled and every export it holds has been recomputed into its
// import; then it stays ready, whatever its members do.
func TestImportsComplete(t *testing.T) {
	f := newFixture(t, newCluster("cluster-1"), newCluster("cluster-2"), newCluster("cluster-3"))
	f.members["cluster-1"].addExport(t, "ns", "web")
	f.members["cluster-2"].addExport(t, "ns", "api")
	f.members["cluster-3"].setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	c := f.controller

	assert.Error(t, c.ImportsComplete(), "before the Clusters are read")
	c.beginInitialSync()
	for _, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		f.sync(name)
	}
	assert.ErrorContains(t, c.ImportsComplete(), "3 Clusters")

	probe := func(name string) {
		t.Helper()
		_, err := f.probe(name)
		require.NoError(t, err)
		c.settleProbed(name)
	}
	probe("cluster-1")
	probe("cluster-3")
	assert.ErrorContains(t, c.ImportsComplete(), "[cluster-2]", "a member that does not answer is settled; one never probed is not")

	probe("cluster-2")
	assert.ErrorContains(t, c.ImportsComplete(), "imports to compute", "the exports of the members reached are still to be recomputed")
	f.recomputeAll()
	require.NoError(t, c.ImportsComplete())
	assert.Equal(t, []string{"default/default/default/cluster-1"}, f.sink.endpoints("ns", "web"))
	assert.Equal(t, []string{"default/default/default/cluster-2"}, f.sink.endpoints("ns", "api"))

	f.members["cluster-1"].addExport(t, "ns", "later")
	c.enqueueService("ns", "later")
	assert.NoError(t, c.ImportsComplete(), "once complete, always complete")
}

// A Cluster deleted before its member was reached, or one that never
// settles, holds the server back no longer than InitialSyncTimeout.
func TestImportsCompleteDoesNotWaitForever(t *testing.T) {
	f := newFixture(t, newCluster("cluster-1"), newCluster("cluster-2"))
	c := f.controller
	c.beginInitialSync()
	assert.ErrorContains(t, c.ImportsComplete(), "2 Clusters")

	cl, err := c.clusters.Get("cluster-1")
	require.NoError(t, err)
	require.NoError(t, f.indexer.Delete(cl))
	assert.ErrorContains(t, c.ImportsComplete(), "1 Clusters", "a deleted Cluster is waited for no more")

	f.clock.Step(InitialSyncTimeout + time.Second)
	assert.NoError(t, c.ImportsComplete(), "cluster-2's member never probed, past the timeout")
}

// A member whose caches are still syncing is not settled.
func TestImportsCompleteWaitsForSyncingMember(t *testing.T) {
	f := newFixture(t, newCluster("cluster-1"))
	c := f.controller
	c.beginInitialSync()
	f.sync("cluster-1")
	c.mu.RLock()
	m := c.members["cluster-1"]
	c.mu.RUnlock()
	require.NotNil(t, m)
	// As a probe that found the member but not yet its caches synced.
	m.mu.Lock()
	m.ready = condition(metav1.ConditionFalse, ReasonSyncing, "caches of ServiceExports and Services are syncing")
	m.mu.Unlock()
	c.settleProbed("cluster-1")
	assert.ErrorContains(t, c.ImportsComplete(), "[cluster-1]")
}
