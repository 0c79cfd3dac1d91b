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
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

// A store's map is made anew once most of what it held is gone, and its
// content is unchanged by it.
func TestStoreShrinks(t *testing.T) {
	const n = 3 * minShrink
	objs := make([]interface{}, n)
	for i := range objs {
		objs[i] = testService("ns", "s"+strconv.Itoa(i), 80)
	}
	for _, tc := range []struct {
		name string
		fill func(s *store[*corev1.Service, imports.Service])
		// empty removes every object, one way or another.
		empty func(s *store[*corev1.Service, imports.Service])
	}{
		{name: "added, then deleted", fill: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				require.NoError(t, s.Add(o))
			}
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			for i, o := range objs {
				require.NoError(t, s.Delete(o))
				assert.Equal(t, n-i-1, s.Len())
			}
		}},
		{name: "listed, then deleted with their final state unknown", fill: func(s *store[*corev1.Service, imports.Service]) {
			require.NoError(t, s.Replace(objs, "1"))
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				k, _ := cache.MetaNamespaceKeyFunc(o)
				require.NoError(t, s.Delete(cache.DeletedFinalStateUnknown{Key: k, Obj: o}))
			}
		}},
		{name: "updated, then listed empty", fill: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				require.NoError(t, s.Update(o))
			}
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			require.NoError(t, s.Replace(nil, "2"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(imports.ServiceOf, (*imports.Service).Equal, nil)
			tc.fill(s)
			assert.Equal(t, n, s.Len())
			assert.Equal(t, n, s.peak)
			// Deleting down to a quarter keeps the rest, in a new map.
			for _, o := range objs[:n-n/4] {
				require.NoError(t, s.Delete(o))
			}
			assert.Equal(t, n/4, s.Len())
			assert.Equal(t, n/4, s.peak, "the map was made anew")
			for _, o := range objs[n-n/4:] {
				_, ok := s.Get("ns", o.(*corev1.Service).Name)
				assert.True(t, ok)
			}
			// Back to full, then nothing.
			tc.fill(s)
			tc.empty(s)
			assert.Zero(t, s.Len())
			assert.Empty(t, s.Keys())
			assert.Less(t, s.peak, minShrink, "the room of %d objects was given back", n)
		})
	}
}

// The controller forgets a Cluster that goes away, however it goes: its
// member, and the time its status was last written.
func TestControllerForgetsDepartedClusters(t *testing.T) {
	for _, tc := range []struct {
		name string
		// leave takes the Cluster away: from the cache, or by marking it
		// deleted.
		leave func(t *testing.T, c *Controller, indexer cache.Indexer, cluster *v1alpha1.Cluster)
		// duringStatus takes the Cluster away while its status is written.
		duringStatus bool
	}{
		{name: "deleted", leave: deleteCluster},
		{name: "being deleted", leave: func(t *testing.T, c *Controller, indexer cache.Indexer, cluster *v1alpha1.Cluster) {
			terminating := cluster.DeepCopy()
			terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			require.NoError(t, indexer.Update(terminating))
			require.NoError(t, c.syncCluster(context.Background(), cluster.Name))
		}},
		{name: "replaced, then deleted", leave: func(t *testing.T, c *Controller, indexer cache.Indexer, cluster *v1alpha1.Cluster) {
			moved := cluster.DeepCopy()
			moved.Spec.GatewayHost = "192.0.2.2"
			require.NoError(t, indexer.Update(moved))
			require.NoError(t, c.syncCluster(context.Background(), cluster.Name))
			deleteCluster(t, c, indexer, moved)
		}},
		{name: "deleted while its status is written", duringStatus: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var clusters []runtime.Object
			for i := range 3 {
				clusters = append(clusters, &v1alpha1.Cluster{
					ObjectMeta: metav1.ObjectMeta{Name: "cluster-" + strconv.Itoa(i)},
					// An unusable kubeconfig: a member that reaches nothing.
					Spec: v1alpha1.ClusterSpec{Kubeconfig: "not a kubeconfig", GatewayHost: "192.0.2.1", GatewayPort: 80},
				})
			}
			client := fake.NewSimpleClientset(clusters...)
			factory := fedinformers.NewSharedInformerFactory(client, 0)
			c := New(client, factory, nil, nopSink{}, DefaultOptions())
			defer c.clusterQueue.ShutDown()
			defer c.serviceQueue.ShutDown()
			c.ctx = ctx
			indexer := factory.Flomesh().V1alpha1().Clusters().Informer().GetIndexer()
			// The members whose status was written while they went.
			gone := make(chan *member, len(clusters))
			if tc.duringStatus {
				client.PrependReactor("update", "clusters", func(action clienttesting.Action) (bool, runtime.Object, error) {
					cluster := action.(clienttesting.UpdateAction).GetObject().(*v1alpha1.Cluster)
					c.mu.RLock()
					gone <- c.members[cluster.Name]
					c.mu.RUnlock()
					assert.NoError(t, indexer.Delete(cluster))
					assert.NoError(t, c.syncCluster(ctx, cluster.Name))
					return false, nil, nil
				})
			}

			for _, o := range clusters {
				cluster := o.(*v1alpha1.Cluster)
				require.NoError(t, indexer.Add(cluster))
				require.NoError(t, c.syncCluster(ctx, cluster.Name))
			}
			if tc.duringStatus {
				// The probe each sync started writes the status, which
				// takes the Cluster away; wait until the writes are over.
				for range clusters {
					select {
					case m := <-gone:
						require.NotNil(t, m)
						require.Eventually(t, func() bool { return !m.probing.Load() }, 5*time.Second, time.Millisecond)
					case <-time.After(5 * time.Second):
						t.Fatal("no status written")
					}
				}
			} else {
				assert.Equal(t, []string{"cluster-0", "cluster-1", "cluster-2"}, c.Members())
				for _, name := range c.Members() {
					c.mu.RLock()
					m := c.members[name]
					c.mu.RUnlock()
					// The probe the sync started writes the status; wait
					// for it, then write it again, as the next probe would.
					require.Eventually(t, func() bool { return !m.probing.Load() }, 5*time.Second, time.Millisecond)
					c.writeStatus(m)
				}
				c.mu.RLock()
				assert.Len(t, c.written, 3)
				c.mu.RUnlock()
				for _, o := range clusters {
					tc.leave(t, c, indexer, o.(*v1alpha1.Cluster))
				}
			}

			c.mu.RLock()
			defer c.mu.RUnlock()
			assert.Empty(t, c.members)
			assert.Empty(t, c.written)
		})
	}
}

// deleteCluster removes a Cluster from the controller's cache and syncs it.
func deleteCluster(t *testing.T, c *Controller, indexer cache.Indexer, cluster *v1alpha1.Cluster) {
	t.Helper()
	require.NoError(t, indexer.Delete(cluster))
	require.NoError(t, c.syncCluster(context.Background(), cluster.Name))
}
