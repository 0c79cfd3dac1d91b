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

package protection

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

func cluster(name, region, zone, group string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterSpec{Region: region, Zone: zone, Group: group},
	}
}

func policy(ns, name string, keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
	}
	return p
}

func TestKeyOf(t *testing.T) {
	for _, tc := range []struct {
		cluster *v1alpha1.Cluster
		want    string
	}{
		{cluster("cluster-1", "default", "default", "default"), "default/default/default/cluster-1"},
		{cluster("cluster-1", "eu", "z1", "g"), "eu/z1/g/cluster-1"},
		{cluster("cluster-1", "", "", ""), "default/default/default/cluster-1"},
		{cluster("cluster-1", "eu", "", ""), "eu/default/default/cluster-1"},
	} {
		assert.Equal(t, tc.want, KeyOf(tc.cluster))
	}
}

func TestIndexes(t *testing.T) {
	clusters := cache.NewIndexer(cache.MetaNamespaceKeyFunc, ClusterIndexers())
	require.NoError(t, clusters.Add(cluster("cluster-1", "eu", "default", "default")))
	require.NoError(t, clusters.Add(cluster("cluster-2", "default", "default", "default")))

	for key, want := range map[string]string{
		"eu/default/default/cluster-1":      "cluster-1",
		"default/default/default/cluster-1": "",
		"default/default/default/cluster-2": "cluster-2",
		"not a key":                         "",
	} {
		c, err := ClusterByKey(clusters, key)
		require.NoError(t, err)
		if want == "" {
			assert.Nil(t, c, key)
		} else if assert.NotNil(t, c, key) {
			assert.Equal(t, want, c.Name)
		}
	}

	policies := cache.NewIndexer(cache.MetaNamespaceKeyFunc, PolicyIndexers())
	require.NoError(t, policies.Add(policy("b", "p", "k1", "k2")))
	require.NoError(t, policies.Add(policy("a", "p", "k1")))
	require.NoError(t, policies.Add(policy("a", "q", "k2", "k2")))
	require.NoError(t, policies.Add(policy("a", "none")))
	for key, want := range map[string][]string{
		"k1": {"a/p", "b/p"},
		"k2": {"a/q", "b/p"},
		"k3": nil,
	} {
		names, err := PoliciesTargeting(policies, key)
		require.NoError(t, err)
		assert.Equal(t, want, names, key)
	}
}

func TestAddIndexersIsIdempotent(t *testing.T) {
	informer := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.Cluster{}, 0, cache.Indexers{})
	require.NoError(t, AddIndexers(informer, ClusterIndexers()))
	require.NoError(t, AddIndexers(informer, ClusterIndexers()), "a second plugin asking for the same index")
	assert.Contains(t, informer.GetIndexer().GetIndexers(), ClusterKeyIndex)
}

func TestListNames(t *testing.T) {
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("ns/p%02d", i))
	}
	assert.Equal(t, "ns/p00", ListNames(names[:1]))
	assert.Equal(t, "ns/p00, ns/p01, ns/p02, ns/p03, ns/p04, ns/p05, ns/p06, ns/p07, ns/p08, ns/p09", ListNames(names[:10]))
	assert.Equal(t, "ns/p00, ns/p01, ns/p02, ns/p03, ns/p04, ns/p05, ns/p06, ns/p07, ns/p08, ns/p09 and 2 more", ListNames(names))
	assert.Equal(t, "1 GlobalTrafficPolicy", Policies(1))
	assert.Equal(t, "3 GlobalTrafficPolicies", Policies(3))
}
