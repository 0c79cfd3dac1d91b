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

package clusterrefs

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func pending(policy, uid, rv string, expiresIn time.Duration) Pending {
	return Pending{Policy: policy, UID: types.UID(uid), ResourceVersion: rv, Expires: metav1.NewTime(now.Add(expiresIn))}
}

func TestUnsettled(t *testing.T) {
	stored := map[string]PolicyState{
		"ns/p": {UID: "u1", ResourceVersion: "10"},
	}
	for _, tc := range []struct {
		name string
		p    Pending
		want bool
	}{
		{"a create not stored yet", pending("ns/q", "u2", "", time.Minute), true},
		{"a create not stored, expired", pending("ns/q", "u2", "", -time.Second), false},
		{"a create stored", pending("ns/p", "u1", "", time.Minute), false},
		{"a create that will fail with AlreadyExists", pending("ns/p", "u9", "", time.Minute), false},
		{"an update not stored yet", pending("ns/p", "u1", "10", time.Minute), true},
		{"an update not stored yet, expired", pending("ns/p", "u1", "10", -time.Second), false},
		{"an update stored", pending("ns/p", "u1", "9", time.Minute), false},
		{"an update of a policy deleted since", pending("ns/q", "u2", "7", time.Minute), false},
		{"an update of a policy deleted and created again", pending("ns/p", "u0", "10", time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.p.Unsettled(now, stored))
		})
	}
}

func TestAdd(t *testing.T) {
	a := pending("ns/a", "ua", "", time.Minute)
	b := pending("ns/b", "ub", "5", time.Minute)
	expired := pending("ns/c", "uc", "", -time.Second)

	got := Add([]Pending{b, expired}, a, now)
	assert.Equal(t, []Pending{a, b}, got, "sorted, the expired one dropped")

	// One reference per policy, the one based on the newest version.
	newer := pending("ns/b", "ub", "7", time.Minute)
	assert.Equal(t, []Pending{newer}, Add([]Pending{b}, newer, now))
	assert.Equal(t, []Pending{newer}, Add([]Pending{newer}, b, now), "an older write does not replace a newer one")
	created := pending("ns/b", "ub", "", 2*time.Minute)
	assert.Equal(t, []Pending{b}, Add([]Pending{created}, b, now), "an update supersedes the create")

	// The same write admitted again keeps the later expiry.
	later := pending("ns/b", "ub", "5", 2*time.Minute)
	assert.Equal(t, []Pending{later}, Add([]Pending{later}, b, now))
	assert.Equal(t, []Pending{later}, Add([]Pending{b}, later, now))
}

func TestRemove(t *testing.T) {
	a := pending("ns/a", "ua", "", time.Minute)
	b := pending("ns/b", "ub", "", time.Minute)
	expired := pending("ns/c", "uc", "", -time.Second)
	got := Remove([]Pending{a, b, expired}, now, func(p Pending) bool { return p.UID == "ua" })
	assert.Equal(t, []Pending{b}, got)
}

func TestEncoding(t *testing.T) {
	ps := []Pending{pending("ns/a", "ua", "", time.Minute), pending("ns/b", "ub", "3", time.Minute)}
	v := Encode(ps)
	decoded := Decode(map[string]string{PendingAnnotation: v})
	if assert.Len(t, decoded, 2) {
		for i := range ps {
			assert.True(t, ps[i].Expires.Equal(&decoded[i].Expires))
			decoded[i].Expires = ps[i].Expires
		}
		assert.Equal(t, ps, decoded)
	}
	assert.Empty(t, Encode(nil))
	assert.Nil(t, Decode(nil))
	assert.Nil(t, Decode(map[string]string{PendingAnnotation: "not json"}))

	var patch map[string]map[string]interface{}
	require.NoError(t, json.Unmarshal(Patch("42", ps), &patch))
	assert.Equal(t, "42", patch["metadata"]["resourceVersion"])
	assert.Equal(t, map[string]interface{}{PendingAnnotation: v}, patch["metadata"]["annotations"])

	require.NoError(t, json.Unmarshal(Patch("43", nil), &patch))
	assert.Equal(t, map[string]interface{}{PendingAnnotation: nil}, patch["metadata"]["annotations"],
		"no references remove the annotation")
}

func TestExpiry(t *testing.T) {
	deadline := now.Add(45 * time.Second)
	assert.Equal(t, deadline.Add(ExpiryMargin), Expiry(now, deadline, true))
	assert.Equal(t, now.Add(DefaultRequestTimeout+ExpiryMargin), Expiry(now, time.Time{}, false))
}
