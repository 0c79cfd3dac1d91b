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
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
)

var (
	now     = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	earlier = metav1.NewTime(now.Add(-time.Hour))

	clustersResource = v1alpha1.SchemeGroupVersion.WithResource("clusters")
	policiesResource = v1alpha1.SchemeGroupVersion.WithResource("globaltrafficpolicies")
)

const (
	key1 = "eu/default/default/cluster-1"
	key2 = "default/default/default/cluster-2"
)

func newCluster(name, region string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "7", Finalizers: []string{Finalizer}},
		Spec:       v1alpha1.ClusterSpec{Region: region, Zone: "default", Group: "default"},
	}
}

func withoutFinalizer(c *v1alpha1.Cluster) *v1alpha1.Cluster {
	c.Finalizers = nil
	return c
}

func deleting(c *v1alpha1.Cluster) *v1alpha1.Cluster {
	c.DeletionTimestamp = &earlier
	c.Finalizers = append(c.Finalizers, "example.com/other")
	return c
}

func ready(c *v1alpha1.Cluster, status metav1.ConditionStatus, reason string) *v1alpha1.Cluster {
	c.Status.Conditions = []metav1.Condition{{Type: clusterset.ConditionReady, Status: status, Reason: reason, LastTransitionTime: earlier}}
	return c
}

func newPolicy(namespace, name string, keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + name), Generation: 3},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType},
	}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
	}
	return p
}

// exported returns an import of namespace/name that the clusters of keys
// serve, on port 8080, each through its gateway at gw-N:80, N its index.
func exported(namespace, name string, keys ...string) *flomesh.ServiceImport {
	si := &flomesh.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if len(keys) > 0 {
		si.Spec.Ports = []flomesh.ServicePort{{Name: "http", Protocol: "TCP", Port: 8080}}
	}
	for i, k := range keys {
		si.Spec.Ports[0].Endpoints = append(si.Spec.Ports[0].Endpoints, flomesh.Endpoint{ClusterKey: k,
			Target: flomesh.Target{Host: fmt.Sprintf("gw-%d", i), Port: 80, Path: "/" + name}})
		si.Status.Clusters = append(si.Status.Clusters, flomesh.SourceStatus{Cluster: k})
		si.Status.Exports = append(si.Status.Exports, flomesh.ExportStatus{Cluster: k})
	}
	return si
}

func always(*flomesh.ServiceImport, *flomesh.ServiceImport) bool { return false }

// keys is a PolicyWrites naming a fixed set of keys.
type keys []string

func (k keys) Naming(key string) bool {
	for _, x := range k {
		if x == key {
			return true
		}
	}
	return false
}

// fixture is what a test of a sync starts from: what the caches hold,
// what storage holds (what a live list returns), the imports and the
// policy writes in progress.
type fixture struct {
	t *testing.T

	client *fake.Clientset
	// Objects in the caches; the Clusters are in storage too.
	clusters []*v1alpha1.Cluster
	policies []*v1alpha1.GlobalTrafficPolicy
	// Objects in storage, and so in a live list.
	objects []runtime.Object
	imports []*flomesh.ServiceImport
	writes  keys
}

func (f *fixture) newController() *Controller {
	f.t.Helper()
	objects := append([]runtime.Object(nil), f.objects...)
	for _, cluster := range f.clusters {
		objects = append(objects, cluster)
	}
	f.client = fake.NewSimpleClientset(objects...)
	// The fake tracker does not apply server-side apply patches: the test
	// checks the patch sent.
	f.client.PrependReactor("patch", "globaltrafficpolicies", func(core.Action) (bool, runtime.Object, error) {
		return true, &v1alpha1.GlobalTrafficPolicy{}, nil
	})
	factory := informers.NewSharedInformerFactory(f.client, 0)
	agg := serviceimport.NewAggregate(serviceimport.DefaultHistory)
	for _, si := range f.imports {
		agg.Set(si, always)
	}
	c, err := NewController(f.client, factory, agg, f.writes)
	require.NoError(f.t, err)
	c.now = func() time.Time { return now }
	for _, cluster := range f.clusters {
		require.NoError(f.t, factory.Flomesh().V1alpha1().Clusters().Informer().GetIndexer().Add(cluster))
	}
	for _, p := range f.policies {
		require.NoError(f.t, factory.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer().GetIndexer().Add(p))
	}
	return c
}

// checkActions compares the actions of the client with the expected ones,
// by verb, resource, subresource and object.
func (f *fixture) checkActions(expected []core.Action) {
	f.t.Helper()
	actions := f.client.Actions()
	require.Len(f.t, actions, len(expected), "actions: %v", actions)
	for i, want := range expected {
		got := actions[i]
		require.True(f.t, want.Matches(got.GetVerb(), got.GetResource().Resource), "action %d: want %s %s, got %s %s",
			i, want.GetVerb(), want.GetResource().Resource, got.GetVerb(), got.GetResource().Resource)
		assert.Equal(f.t, want.GetSubresource(), got.GetSubresource(), "action %d", i)
		if w, ok := want.(core.UpdateAction); ok {
			assert.True(f.t, apiequality.Semantic.DeepEqual(w.GetObject(), got.(core.UpdateAction).GetObject()),
				"action %d: want %+v, got %+v", i, w.GetObject(), got.(core.UpdateAction).GetObject())
		}
	}
}

func listPolicies() core.Action {
	return core.NewListAction(policiesResource, v1alpha1.SchemeGroupVersion.WithKind("GlobalTrafficPolicy"), "", metav1.ListOptions{})
}

func updateCluster(c *v1alpha1.Cluster) core.Action {
	return core.NewRootUpdateAction(clustersResource, c)
}

func TestSyncCluster(t *testing.T) {
	for _, tc := range []struct {
		name     string
		f        fixture
		cluster  string
		want     func() []core.Action
		wantErr  string
		wantKept bool
	}{
		{
			name: "a Cluster without the finalizer gets it",
			f:    fixture{clusters: []*v1alpha1.Cluster{withoutFinalizer(newCluster("cluster-1", "eu"))}},
			want: func() []core.Action { return []core.Action{updateCluster(newCluster("cluster-1", "eu"))} },
		},
		{
			name: "a protected Cluster is left alone",
			f:    fixture{clusters: []*v1alpha1.Cluster{newCluster("cluster-1", "eu")}},
		},
		{
			name: "a Cluster that is gone is ignored",
			f:    fixture{},
		},
		{
			name: "a Cluster being deleted that no policy targets goes",
			f: fixture{
				clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu"))},
				policies: []*v1alpha1.GlobalTrafficPolicy{newPolicy("httpbin", "httpbin", key2)},
				objects:  []runtime.Object{newPolicy("httpbin", "httpbin", key2)},
			},
			want: func() []core.Action {
				kept := deleting(newCluster("cluster-1", "eu"))
				kept.Finalizers = []string{"example.com/other"}
				return []core.Action{listPolicies(), updateCluster(kept)}
			},
		},
		{
			name: "a Cluster being deleted that a cached policy targets stays, without a live list",
			f: fixture{
				clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu"))},
				policies: []*v1alpha1.GlobalTrafficPolicy{newPolicy("httpbin", "httpbin", key2, key1)},
			},
		},
		{
			name: "a Cluster being deleted that a policy not yet cached targets stays",
			f: fixture{
				clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu"))},
				objects:  []runtime.Object{newPolicy("httpbin", "httpbin", key1)},
			},
			want: func() []core.Action { return []core.Action{listPolicies()} },
		},
		{
			name: "a Cluster being deleted stays while a policy write naming it is in progress",
			f: fixture{
				clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu"))},
				writes:   keys{key1},
			},
			wantErr: "a GlobalTrafficPolicy write naming eu/default/default/cluster-1 is in progress",
		},
		{
			name: "a write in progress naming another key does not hold it",
			f: fixture{
				clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu"))},
				writes:   keys{key2},
			},
			want: func() []core.Action {
				kept := deleting(newCluster("cluster-1", "eu"))
				kept.Finalizers = []string{"example.com/other"}
				return []core.Action{listPolicies(), updateCluster(kept)}
			},
		},
		{
			name: "a Cluster being deleted without the finalizer is left alone",
			f:    fixture{clusters: []*v1alpha1.Cluster{deleting(withoutFinalizer(newCluster("cluster-1", "eu")))}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.t = t
			c := tc.f.newController()
			err := c.syncCluster(context.Background(), "cluster-1")
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			var want []core.Action
			if tc.want != nil {
				want = tc.want()
			}
			tc.f.checkActions(want)
		})
	}
}

// appliedStatus returns the status a server-side apply action sends, and
// checks that it goes to the status of the policy, as the controller's
// field manager, forced.
func appliedStatus(t *testing.T, action core.Action) (metav1.ObjectMeta, v1alpha1.GlobalTrafficPolicyStatus) {
	t.Helper()
	patch, ok := action.(core.PatchAction)
	require.True(t, ok, "a patch: %v", action)
	assert.Equal(t, types.ApplyPatchType, patch.GetPatchType())
	assert.Equal(t, "status", patch.GetSubresource())
	var sent v1alpha1.GlobalTrafficPolicy
	require.NoError(t, json.Unmarshal(patch.GetPatch(), &sent))
	return sent.ObjectMeta, sent.Status
}

func TestSyncPolicy(t *testing.T) {
	readyTrue := func(name, region string) *v1alpha1.Cluster {
		return ready(newCluster(name, region), metav1.ConditionTrue, "Connected")
	}
	invalid := exported("httpbin", "httpbin", key1)
	// An invalid export serves no port.
	invalid.Spec.Ports, invalid.Status.Clusters = nil, nil
	invalid.Status.Exports[0].Conditions = []metav1.Condition{{Type: imports.ConditionValid, Status: metav1.ConditionFalse, Reason: "NamespaceNotFederated"}}

	for _, tc := range []struct {
		name        string
		clusters    []*v1alpha1.Cluster
		imports     []*flomesh.ServiceImport
		keys        []string
		wantTargets []v1alpha1.TargetStatus
		wantCond    metav1.Condition
		// wantRouted is the Routed condition's status and reason.
		wantRouted []string
		// wantTiers is, per consumer (by key), the clusters of its tiers.
		wantTiers map[string][][]string
	}{
		{
			name:     "every target known, Ready and exporting",
			clusters: []*v1alpha1.Cluster{readyTrue("cluster-1", "eu"), readyTrue("cluster-2", "default")},
			imports:  []*flomesh.ServiceImport{exported("httpbin", "httpbin", key1, key2)},
			keys:     []string{key1, key2},
			wantTargets: []v1alpha1.TargetStatus{
				{ClusterKey: key1, Known: true, Ready: true, Exported: true},
				{ClusterKey: key2, Known: true, Ready: true, Exported: true},
			},
			wantCond:   metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonAllTargetsKnown, Message: "every target is the key of a registered Cluster"},
			wantRouted: []string{"True", ReasonEveryConsumerRouted},
			wantTiers:  map[string][][]string{key1: {{key1}, {key2}}, key2: {{key2}, {key1}}},
		},
		{
			name:     "a Cluster not Ready and not exporting is known all the same",
			clusters: []*v1alpha1.Cluster{ready(newCluster("cluster-1", "eu"), metav1.ConditionFalse, "Unreachable"), newCluster("cluster-2", "default")},
			imports:  []*flomesh.ServiceImport{exported("httpbin", "httpbin", key1), exported("other", "httpbin", key2)},
			keys:     []string{key1, key2},
			wantTargets: []v1alpha1.TargetStatus{
				{ClusterKey: key1, Known: true, Exported: true, Message: "not Ready (Unreachable)"},
				{ClusterKey: key2, Known: true, Message: "not Ready; does not export the service"},
			},
			wantCond: metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonAllTargetsKnown, Message: "every target is the key of a registered Cluster"},
			// cluster-1's endpoints are still in the import (its grace has
			// not run out), so the gateways route to it, and so does the
			// status.
			wantRouted: []string{"True", ReasonEveryConsumerRouted},
			wantTiers:  map[string][][]string{key1: {{key1}}, key2: {{key1}}},
		},
		{
			name:     "an export that is not Valid does not count",
			clusters: []*v1alpha1.Cluster{readyTrue("cluster-1", "eu")},
			imports:  []*flomesh.ServiceImport{invalid},
			keys:     []string{key1},
			wantTargets: []v1alpha1.TargetStatus{
				{ClusterKey: key1, Known: true, Ready: true, Message: "does not export the service"},
			},
			wantCond:   metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonAllTargetsKnown, Message: "every target is the key of a registered Cluster"},
			wantRouted: []string{"False", ReasonNotExported},
		},
		{
			name:     "unknown keys and Clusters being deleted are named",
			clusters: []*v1alpha1.Cluster{readyTrue("cluster-1", "eu"), deleting(readyTrue("cluster-2", "default"))},
			imports:  []*flomesh.ServiceImport{exported("httpbin", "httpbin", key1, key2)},
			keys:     []string{key1, "default/default/default/cluster-1", key2, key1},
			wantTargets: []v1alpha1.TargetStatus{
				{ClusterKey: key1, Known: true, Ready: true, Exported: true},
				{ClusterKey: "default/default/default/cluster-1", Message: "no registered Cluster has this key"},
				{ClusterKey: key2, Message: `Cluster "cluster-2", of this key, is being deleted`},
			},
			wantCond: metav1.Condition{Status: metav1.ConditionFalse, Reason: ReasonUnknownTargets,
				Message: `targets that name no live Cluster: default/default/default/cluster-1 (no registered Cluster has this key), ` +
					`default/default/default/cluster-2 (Cluster "cluster-2", of this key, is being deleted)`},
			// A Cluster being deleted is no consumer; while the import
			// still holds its endpoints, it is routed to.
			wantRouted: []string{"True", ReasonEveryConsumerRouted},
			wantTiers:  map[string][][]string{key1: {{key1}, {key2}}},
		},
		{
			name:       "a policy without targets is resolved",
			wantCond:   metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonAllTargetsKnown, Message: "every target is the key of a registered Cluster"},
			wantRouted: []string{"Unknown", ReasonNoMembers},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := newPolicy("httpbin", "httpbin", tc.keys...)
			f := &fixture{t: t, clusters: tc.clusters, policies: []*v1alpha1.GlobalTrafficPolicy{policy}, imports: tc.imports}
			c := f.newController()
			require.NoError(t, c.syncPolicy(context.Background(), "httpbin/httpbin"))
			actions := f.client.Actions()
			require.Len(t, actions, 1)
			assert.True(t, actions[0].Matches("patch", "globaltrafficpolicies"))
			meta, status := appliedStatus(t, actions[0])
			assert.Equal(t, "httpbin", meta.Name)
			assert.Equal(t, policy.UID, meta.UID, "the write is for this policy only")
			assert.Equal(t, tc.wantTargets, status.Targets)
			tc.wantCond.Type = ConditionResolved
			tc.wantCond.ObservedGeneration = 3
			require.Len(t, status.Conditions, 2)
			got := status.Conditions[0]
			assert.True(t, now.Equal(got.LastTransitionTime.Time), "a new condition: %v", got.LastTransitionTime)
			got.LastTransitionTime = metav1.Time{}
			assert.Equal(t, tc.wantCond, got)
			routed := status.Conditions[1]
			assert.Equal(t, ConditionRouted, routed.Type)
			assert.Equal(t, tc.wantRouted, []string{string(routed.Status), routed.Reason}, routed.Message)
			assert.EqualValues(t, 3, routed.ObservedGeneration)
			gotTiers := map[string][][]string{}
			for _, r := range status.Consumers {
				assert.EqualValues(t, 8080, r.Port)
				var tiers [][]string
				for _, tier := range r.Tiers {
					var keys []string
					for _, d := range tier.Destinations {
						keys = append(keys, d.Cluster)
					}
					tiers = append(tiers, keys)
				}
				gotTiers[r.Cluster] = tiers
			}
			if tc.wantTiers == nil {
				tc.wantTiers = map[string][][]string{}
			}
			assert.Equal(t, tc.wantTiers, gotTiers)

			// Once written, the same status is not written again.
			written := policy.DeepCopy()
			written.Status = status
			f = &fixture{t: t, clusters: tc.clusters, policies: []*v1alpha1.GlobalTrafficPolicy{written}, imports: tc.imports}
			c = f.newController()
			require.NoError(t, c.syncPolicy(context.Background(), "httpbin/httpbin"))
			f.checkActions(nil)
		})
	}
}

func TestSyncPolicyKeepsTransitionTime(t *testing.T) {
	policy := newPolicy("httpbin", "httpbin", key1)
	policy.Status = v1alpha1.GlobalTrafficPolicyStatus{
		Targets: []v1alpha1.TargetStatus{{ClusterKey: key1, Known: true, Message: "not Ready; does not export the service"}},
		Conditions: []metav1.Condition{{Type: ConditionResolved, Status: metav1.ConditionTrue, ObservedGeneration: 3,
			Reason: ReasonAllTargetsKnown, Message: "every target is the key of a registered Cluster", LastTransitionTime: earlier}},
	}
	f := &fixture{t: t, policies: []*v1alpha1.GlobalTrafficPolicy{policy},
		clusters: []*v1alpha1.Cluster{ready(newCluster("cluster-1", "eu"), metav1.ConditionTrue, "Connected")}}
	c := f.newController()
	require.NoError(t, c.syncPolicy(context.Background(), "httpbin/httpbin"))
	require.Len(t, f.client.Actions(), 1)
	_, status := appliedStatus(t, f.client.Actions()[0])
	assert.Equal(t, []v1alpha1.TargetStatus{{ClusterKey: key1, Known: true, Ready: true, Message: "does not export the service"}}, status.Targets)
	assert.True(t, earlier.Equal(&status.Conditions[0].LastTransitionTime), "Resolved is still True: %v", status.Conditions[0].LastTransitionTime)
	assert.Equal(t, ConditionRouted, status.Conditions[1].Type)
	assert.True(t, now.Equal(status.Conditions[1].LastTransitionTime.Time), "Routed is new")
}

func TestSyncPolicyGone(t *testing.T) {
	f := &fixture{t: t}
	c := f.newController()
	require.NoError(t, c.syncPolicy(context.Background(), "httpbin/httpbin"))
	f.checkActions(nil)
}

// queued drains a queue, without waiting, and returns its keys.
func queued(t *testing.T, c *Controller, policies bool) []string {
	t.Helper()
	q := c.clusterQueue
	if policies {
		q = c.policyQueue
	}
	var out []string
	for q.Len() > 0 {
		k, _ := q.Get()
		q.Done(k)
		q.Forget(k)
		out = append(out, k)
	}
	return out
}

func TestClusterEvents(t *testing.T) {
	f := &fixture{t: t, policies: []*v1alpha1.GlobalTrafficPolicy{
		newPolicy("a", "p", key1), newPolicy("b", "p", key2), newPolicy("c", "p", key1, key2),
		newPolicy("d", "p", "default/default/default/cluster-1"),
	}}
	c := f.newController()

	all := []string{"a/p", "b/p", "c/p", "d/p"}
	c.clusterAdded(withoutFinalizer(newCluster("cluster-1", "eu")))
	assert.Equal(t, []string{"cluster-1"}, queued(t, c, false), "a new Cluster needs the finalizer")
	assert.ElementsMatch(t, all, queued(t, c, true), "every policy routes it, as a consumer if not a target")

	old := ready(newCluster("cluster-1", "eu"), metav1.ConditionTrue, "Connected")
	beat := old.DeepCopy()
	beat.Status.LastHeartbeatTime = &metav1.Time{Time: now}
	c.clusterUpdated(old, beat)
	assert.Empty(t, queued(t, c, false), "a protected Cluster needs nothing")
	assert.Empty(t, queued(t, c, true), "a heartbeat concerns no policy")

	down := ready(newCluster("cluster-1", "eu"), metav1.ConditionFalse, "Unreachable")
	c.clusterUpdated(old, down)
	assert.ElementsMatch(t, all, queued(t, c, true), "Ready flipped")

	forbidden := ready(newCluster("cluster-1", "eu"), metav1.ConditionFalse, "Forbidden")
	c.clusterUpdated(down, forbidden)
	assert.ElementsMatch(t, all, queued(t, c, true), "the reason it is not Ready changed")
	stillDown := forbidden.DeepCopy()
	stillDown.Status.Conditions[0].Message = "another message"
	c.clusterUpdated(forbidden, stillDown)
	assert.Empty(t, queued(t, c, true), "the message of a condition is not in the status")

	moved := old.DeepCopy()
	moved.Spec.Region = "default"
	c.clusterUpdated(old, moved)
	assert.ElementsMatch(t, all, queued(t, c, true), "the key changed")

	c.clusterUpdated(old, deleting(old.DeepCopy()))
	assert.Equal(t, []string{"cluster-1"}, queued(t, c, false), "a Cluster being deleted may go")
	assert.ElementsMatch(t, all, queued(t, c, true), "the policies lose it")

	c.clusterDeleted(cache.DeletedFinalStateUnknown{Key: "cluster-2", Obj: newCluster("cluster-2", "default")})
	assert.ElementsMatch(t, all, queued(t, c, true))
}

func TestPolicyEvents(t *testing.T) {
	f := &fixture{t: t, clusters: []*v1alpha1.Cluster{deleting(newCluster("cluster-1", "eu")), newCluster("cluster-2", "default")}}
	c := f.newController()

	p := newPolicy("httpbin", "httpbin", key1, key2)
	c.policyAdded(p)
	assert.Equal(t, []string{"httpbin/httpbin"}, queued(t, c, true))
	assert.Empty(t, queued(t, c, false))

	c.policyUpdated(p, newPolicy("httpbin", "httpbin", key2))
	assert.Equal(t, []string{"httpbin/httpbin"}, queued(t, c, true))
	assert.Equal(t, []string{"cluster-1"}, queued(t, c, false), "the key it dropped is of a Cluster being deleted")

	c.policyUpdated(newPolicy("httpbin", "httpbin", key1, key2), newPolicy("httpbin", "httpbin", key1))
	assert.Empty(t, queued(t, c, false), "cluster-2 is not being deleted")

	c.policyDeleted(cache.DeletedFinalStateUnknown{Key: "httpbin/httpbin", Obj: p})
	assert.Equal(t, []string{"cluster-1"}, queued(t, c, false))
}

func TestImportEvents(t *testing.T) {
	f := &fixture{t: t, policies: []*v1alpha1.GlobalTrafficPolicy{newPolicy("httpbin", "httpbin", key1), newPolicy("web", "web", key1)}}
	c := f.newController()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watchImports(ctx)
	}()
	defer wg.Wait()
	defer cancel()

	// A watch starts by looking at every policy again.
	assert.Eventually(t, func() bool { return c.policyQueue.Len() == 2 }, 5*time.Second, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"httpbin/httpbin", "web/web"}, queued(t, c, true))

	c.imports.Set(exported("nopolicy", "svc", key1), always)
	c.imports.Set(exported("httpbin", "httpbin", key1), always)
	assert.Eventually(t, func() bool { return c.policyQueue.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"httpbin/httpbin"}, queued(t, c, true), "only imports with a policy")

	c.imports.Delete("httpbin", "httpbin")
	assert.Eventually(t, func() bool { return c.policyQueue.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
}

// TestRun runs the controller on informers, as the server does: a new
// Cluster gets the finalizer and a policy its status, again when its
// import changes.
func TestRun(t *testing.T) {
	client := fake.NewSimpleClientset(withoutFinalizer(newCluster("cluster-1", "eu")), newPolicy("httpbin", "httpbin", key1))
	var mu sync.Mutex
	var applied []v1alpha1.GlobalTrafficPolicyStatus
	client.PrependReactor("patch", "globaltrafficpolicies", func(action core.Action) (bool, runtime.Object, error) {
		var sent v1alpha1.GlobalTrafficPolicy
		if err := json.Unmarshal(action.(core.PatchAction).GetPatch(), &sent); err != nil {
			return true, nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, sent.Status)
		return true, &sent, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	agg := serviceimport.NewAggregate(serviceimport.DefaultHistory)
	c, err := NewController(client, factory, agg, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	factory.Start(ctx.Done())
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.Run(ctx, 2)
	}()

	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		got, err := client.FlomeshV1alpha1().Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		require.NoError(ct, err)
		assert.Equal(ct, []string{Finalizer}, got.Finalizers)
	}, 10*time.Second, 10*time.Millisecond)

	last := func() (v1alpha1.GlobalTrafficPolicyStatus, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(applied) == 0 {
			return v1alpha1.GlobalTrafficPolicyStatus{}, false
		}
		return applied[len(applied)-1], true
	}
	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		st, ok := last()
		require.True(ct, ok)
		require.Len(ct, st.Targets, 1)
		assert.False(ct, st.Targets[0].Exported)
	}, 10*time.Second, 10*time.Millisecond)

	// The reactor stores nothing, so the cached status stays empty and
	// every sync writes: the import's change shows in the next write.
	agg.Set(exported("httpbin", "httpbin", key1), always)
	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		st, ok := last()
		require.True(ct, ok)
		require.Len(ct, st.Targets, 1)
		assert.True(ct, st.Targets[0].Exported)
	}, 10*time.Second, 10*time.Millisecond)
}
