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

package clusterinuse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/admissiontest"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
	"github.com/fedmesh/fedmesh/pkg/protection"
)

const (
	key1 = "eu/default/default/cluster-1"
	key2 = "default/default/default/cluster-2"
)

// world is what a test starts from: objects in storage, and the policies
// the plugin's cache has, which may differ (it lags).
type world struct {
	clusters []*v1alpha1.Cluster
	policies []*v1alpha1.GlobalTrafficPolicy
	// cached are the policies in the cache; nil means those stored.
	cached []*v1alpha1.GlobalTrafficPolicy
}

func (w world) build(t *testing.T) (*Plugin, *fake.Clientset) {
	t.Helper()
	var objs []runtime.Object
	for _, c := range w.clusters {
		objs = append(objs, c)
	}
	for _, p := range w.policies {
		objs = append(objs, p)
	}
	store := fake.NewSimpleClientset(objs...)
	cached := w.cached
	if cached == nil {
		cached = w.policies
	}
	p := New()
	p.policyIndex = admissiontest.PolicyCache(cached...)
	p.client = store
	require.NoError(t, p.ValidateInitialization())
	return p, store
}

// cluster returns the stored Cluster of that name.
func cluster(t *testing.T, store *fake.Clientset, name string) *v1alpha1.Cluster {
	t.Helper()
	c, err := store.FlomeshV1alpha1().Clusters().Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return c
}

func clusters() []*v1alpha1.Cluster {
	return []*v1alpha1.Cluster{
		admissiontest.NewCluster("cluster-1", "eu"),
		admissiontest.NewCluster("cluster-2", "default"),
	}
}

func manyPolicies(n int, key string) []*v1alpha1.GlobalTrafficPolicy {
	var ps []*v1alpha1.GlobalTrafficPolicy
	for i := range n {
		ps = append(ps, admissiontest.NewPolicy(fmt.Sprintf("ns-%02d", i), "svc", key))
	}
	return ps
}

func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name    string
		world   world
		cluster string
		// want is "" (allowed) or "Forbidden".
		want     string
		wantMsgs []string
	}{
		{
			name:    "a Cluster no policy targets can go",
			world:   world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key1)}},
			cluster: "cluster-2",
		},
		{
			name:    "a targeted Cluster stays, naming the policy",
			world:   world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key1, key2)}},
			cluster: "cluster-2", want: "Forbidden",
			wantMsgs: []string{`clusters.flomesh.io "cluster-2" is forbidden: cannot delete it: its key "default/default/default/cluster-2" is a target of 1 GlobalTrafficPolicy (httpbin/httpbin)`, "spec.targets"},
		},
		{
			name:    "the first ten policies are named, the rest counted",
			world:   world{clusters: clusters(), policies: manyPolicies(12, key2)},
			cluster: "cluster-2", want: "Forbidden",
			wantMsgs: []string{"12 GlobalTrafficPolicies (ns-00/svc, ns-01/svc,", "ns-09/svc and 2 more)"},
		},
		{
			name: "a policy the cache does not have yet is found in storage",
			world: world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)},
				cached: []*v1alpha1.GlobalTrafficPolicy{}},
			cluster: "cluster-2", want: "Forbidden", wantMsgs: []string{"httpbin/httpbin"},
		},
		{
			name: "a policy that no longer targets the key but is cached as it was does not hold it",
			world: world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key1)},
				cached: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key1, key2)}},
			cluster: "cluster-2",
		},
		{
			name: "a policy deleted but still cached does not hold it",
			world: world{clusters: clusters(),
				cached: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)}},
			cluster: "cluster-2",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, store := tc.world.build(t)
			old := cluster(t, store, tc.cluster)
			err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: old}.Attributes(), nil)
			switch tc.want {
			case "":
				require.NoError(t, err)
			case "Forbidden":
				assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
			}
			for _, msg := range tc.wantMsgs {
				assert.ErrorContains(t, err, msg)
			}
			for _, a := range store.Actions() {
				assert.Contains(t, []string{"get", "list"}, a.GetVerb(), "the plugin writes nothing: %v", a)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	w := world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)}}
	p, store := w.build(t)
	old := cluster(t, store, "cluster-2")

	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.Cluster)
		want   string
	}{
		{"a new region", func(c *v1alpha1.Cluster) { c.Spec.Region = "eu" }, `cannot change its key to "eu/default/default/cluster-2": its key "default/default/default/cluster-2" is a target of 1 GlobalTrafficPolicy (httpbin/httpbin)`},
		{"a new zone", func(c *v1alpha1.Cluster) { c.Spec.Zone = "z1" }, `cannot change its key to "default/z1/default/cluster-2"`},
		{"a new group", func(c *v1alpha1.Cluster) { c.Spec.Group = "blue" }, `cannot change its key to "default/default/blue/cluster-2"`},
		{"a new gateway", func(c *v1alpha1.Cluster) { c.Spec.GatewayPort = 8080 }, ""},
		{"a label", func(c *v1alpha1.Cluster) { c.Labels = map[string]string{"a": "b"} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			updated := old.DeepCopy()
			tc.change(updated)
			err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Update, Object: updated, Old: old}.Attributes(), nil)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
			assert.ErrorContains(t, err, tc.want)
		})
	}

	// A Cluster no policy targets may change its key.
	free := cluster(t, store, "cluster-1")
	moved := free.DeepCopy()
	moved.Spec.Region = "us"
	assert.NoError(t, p.Validate(context.Background(), admissiontest.Request{Operation: admission.Update, Object: moved, Old: free}.Attributes(), nil))
}

func TestIgnored(t *testing.T) {
	w := world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)}}
	p, store := w.build(t)
	c := cluster(t, store, "cluster-2")
	moved := c.DeepCopy()
	moved.Spec.Region = "eu"
	policy := w.policies[0]
	for _, tc := range []struct {
		name string
		req  admissiontest.Request
	}{
		{"the status of a Cluster", admissiontest.Request{Operation: admission.Update, Object: moved, Old: c, Subresource: "status"}},
		{"a policy", admissiontest.Request{Operation: admission.Delete, Old: policy}},
		{"a new Cluster", admissiontest.Request{Operation: admission.Create, Object: c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, p.Validate(context.Background(), tc.req.Attributes(), nil))
		})
	}
}

func TestAdmitAddsTheFinalizer(t *testing.T) {
	withFinalizers := func(finalizers ...string) *v1alpha1.Cluster {
		c := admissiontest.NewCluster("cluster-2", "default")
		c.Finalizers = finalizers
		return c
	}
	for _, tc := range []struct {
		name string
		req  admissiontest.Request
		want []string
	}{
		{"a new Cluster", admissiontest.Request{Operation: admission.Create, Object: withFinalizers()},
			[]string{protection.Finalizer}},
		{"a new Cluster with other finalizers", admissiontest.Request{Operation: admission.Create, Object: withFinalizers("example.com/hold")},
			[]string{"example.com/hold", protection.Finalizer}},
		{"a new Cluster that has it", admissiontest.Request{Operation: admission.Create, Object: withFinalizers(protection.Finalizer)},
			[]string{protection.Finalizer}},
		// The controller puts it back, unless the Cluster is being
		// deleted: removing it by hand is the way out of a stuck delete.
		{"an update that removes it", admissiontest.Request{Operation: admission.Update, Object: withFinalizers(), Old: withFinalizers(protection.Finalizer)},
			nil},
		{"the status of a new Cluster", admissiontest.Request{Operation: admission.Create, Object: withFinalizers(), Subresource: "status"},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.req.Attributes()
			require.NoError(t, New().Admit(context.Background(), a, nil))
			assert.Equal(t, tc.want, a.GetObject().(*flomesh.Cluster).Finalizers)
		})
	}
}

func TestNotReady(t *testing.T) {
	t.Parallel()
	p, store := world{clusters: clusters()}.build(t)
	// Never ready; the request waits a moment, not kube's 10 s.
	p.ready = readiness.Gate{Ready: func() bool { return false }, Timeout: 50 * time.Millisecond}
	err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: cluster(t, store, "cluster-2")}.Attributes(), nil)
	assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	assert.ErrorContains(t, err, "not yet ready")
}

func TestInitialization(t *testing.T) {
	p := New()
	assert.Error(t, p.ValidateInitialization(), "without informers and client")

	client := fake.NewSimpleClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	p.SetFedmeshInformerFactory(factory)
	p.SetFedmeshClientset(client)
	require.NoError(t, p.ValidateInitialization())
	assert.Contains(t, factory.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer().GetIndexer().GetIndexers(), protection.TargetKeyIndex)

	plugins := admission.NewPlugins()
	Register(plugins)
	assert.Contains(t, plugins.Registered(), PluginName)
}
