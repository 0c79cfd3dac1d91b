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
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	fedlisters "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
)

// failingLister fails every read, as a broken cache would.
type failingLister struct{ fedlisters.ClusterLister }

func (failingLister) Get(string) (*v1alpha1.Cluster, error) { return nil, errors.New("cache broken") }
func (failingLister) List(labels.Selector) ([]*v1alpha1.Cluster, error) {
	return nil, errors.New("cache broken")
}

type nopSink struct{}

func (nopSink) Set(*flomesh.ServiceImport, func(a, b *flomesh.ServiceImport) bool) bool { return false }
func (nopSink) Delete(string, string) bool                                              { return false }

// The worker alone chooses between a retry with backoff and forgetting,
// as in sample-controller: a failed sync backs off more on every failure,
// and a sync that succeeds forgets the failures.
func TestClusterWorkerBacksOffThenForgets(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	c := New(client, fedinformers.NewSharedInformerFactory(client, 0), nil, nopSink{}, DefaultOptions())
	defer c.clusterQueue.ShutDown()
	working := c.clusters
	c.clusters = failingLister{}

	for want := 1; want <= 3; want++ {
		if want == 1 {
			c.clusterQueue.Add("cluster-1")
		}
		// AddRateLimited re-adds the key after a backoff; wait for it.
		assert.True(t, c.processCluster(ctx))
		assert.Equal(t, want, c.clusterQueue.NumRequeues("cluster-1"), "failure %d backs off further", want)
	}

	// The cache heals; the key, still queued with backoff, comes back once
	// more, and a successful sync forgets its failures.
	c.clusters = working
	assert.True(t, c.processCluster(ctx))
	assert.Equal(t, 0, c.clusterQueue.NumRequeues("cluster-1"))
	assert.Equal(t, 0, c.clusterQueue.Len())
}
