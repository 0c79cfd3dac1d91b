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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	flomeshv1alpha1 "github.com/fedmesh/fedmesh/generated/clientset/versioned/typed/flomesh/v1alpha1"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/admissiontest"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/clusterrefs"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
)

var now = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

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

func (w world) build(t *testing.T) (*Plugin, *admissiontest.Store) {
	t.Helper()
	var objs []runtime.Object
	for _, c := range w.clusters {
		objs = append(objs, c)
	}
	for _, p := range w.policies {
		objs = append(objs, p)
	}
	store := admissiontest.NewStore(objs...)
	cached := w.cached
	if cached == nil {
		for i := range store.Policies() {
			cached = append(cached, &store.Policies()[i])
		}
	}
	p := New()
	p.policyIndex = admissiontest.PolicyCache(cached...)
	p.client = store
	p.now = func() time.Time { return now }
	p.wait = wait.Backoff{Steps: 2, Duration: time.Millisecond}
	require.NoError(t, p.ValidateInitialization())
	return p, store
}

func clusters() []*v1alpha1.Cluster {
	return []*v1alpha1.Cluster{
		admissiontest.NewCluster("cluster-1", "eu"),
		admissiontest.NewCluster("cluster-2", "default"),
	}
}

func withPending(c *v1alpha1.Cluster, refs ...clusterrefs.Pending) *v1alpha1.Cluster {
	c.Annotations = map[string]string{clusterrefs.PendingAnnotation: clusterrefs.Encode(refs)}
	return c
}

func manyPolicies(n int, key string) []*v1alpha1.GlobalTrafficPolicy {
	var ps []*v1alpha1.GlobalTrafficPolicy
	for i := range n {
		ps = append(ps, admissiontest.NewPolicy(fmt.Sprintf("ns-%02d", i), "svc", key))
	}
	return ps
}

func TestDelete(t *testing.T) {
	expires := metav1.NewTime(now.Add(time.Minute))
	for _, tc := range []struct {
		name    string
		world   world
		cluster string
		// want is "" (allowed), "Forbidden" or "Conflict".
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
		{
			name: "a policy admitted but not stored yet holds it",
			world: world{clusters: []*v1alpha1.Cluster{withPending(admissiontest.NewCluster("cluster-2", "default"),
				clusterrefs.Pending{Policy: "httpbin/httpbin", UID: "u1", Expires: expires})}},
			cluster: "cluster-2", want: "Conflict",
			wantMsgs: []string{`Operation cannot be fulfilled on clusters.flomesh.io "cluster-2": cannot delete it: its key "default/default/default/cluster-2" was just added to the targets of 1 GlobalTrafficPolicy (httpbin/httpbin)`, "try again", expires.UTC().Format(time.RFC3339)},
		},
		{
			name: "an admitted write that expired does not hold it",
			world: world{clusters: []*v1alpha1.Cluster{withPending(admissiontest.NewCluster("cluster-2", "default"),
				clusterrefs.Pending{Policy: "httpbin/httpbin", UID: "u1", Expires: metav1.NewTime(now.Add(-time.Second))})}},
			cluster: "cluster-2",
		},
		{
			name: "an admitted write that is stored, and changed since, does not hold it",
			world: world{
				clusters: []*v1alpha1.Cluster{withPending(admissiontest.NewCluster("cluster-2", "default"),
					clusterrefs.Pending{Policy: "httpbin/httpbin", UID: "u1", Expires: expires})},
				policies: []*v1alpha1.GlobalTrafficPolicy{withUID(admissiontest.NewPolicy("httpbin", "httpbin", key1), "u1")},
			},
			cluster: "cluster-2",
		},
		{
			name: "an admitted update of a stored policy holds it until stored",
			world: world{
				clusters: []*v1alpha1.Cluster{withPending(admissiontest.NewCluster("cluster-2", "default"),
					// The store gives the policy below version 2.
					clusterrefs.Pending{Policy: "httpbin/httpbin", UID: "u1", ResourceVersion: "2", Expires: expires})},
				policies: []*v1alpha1.GlobalTrafficPolicy{withUID(admissiontest.NewPolicy("httpbin", "httpbin", key1), "u1")},
			},
			cluster: "cluster-2", want: "Conflict",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, store := tc.world.build(t)
			old := store.Cluster(tc.cluster)
			err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: old}.Attributes(), nil)
			switch tc.want {
			case "":
				require.NoError(t, err)
			case "Forbidden":
				assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
			case "Conflict":
				assert.True(t, apierrors.IsConflict(err), "want Conflict, got %v", err)
			}
			for _, msg := range tc.wantMsgs {
				assert.ErrorContains(t, err, msg)
			}
		})
	}
}

func withUID(p *v1alpha1.GlobalTrafficPolicy, uid types.UID) *v1alpha1.GlobalTrafficPolicy {
	p.UID = uid
	return p
}

func TestUpdate(t *testing.T) {
	w := world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)}}
	p, store := w.build(t)
	old := store.Cluster("cluster-2")

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
	free := store.Cluster("cluster-1")
	moved := free.DeepCopy()
	moved.Spec.Region = "us"
	assert.NoError(t, p.Validate(context.Background(), admissiontest.Request{Operation: admission.Update, Object: moved, Old: free}.Attributes(), nil))
}

func TestIgnored(t *testing.T) {
	w := world{clusters: clusters(), policies: []*v1alpha1.GlobalTrafficPolicy{admissiontest.NewPolicy("httpbin", "httpbin", key2)}}
	p, store := w.build(t)
	c := store.Cluster("cluster-2")
	moved := c.DeepCopy()
	moved.Spec.Region = "eu"
	policy := store.Policies()[0]
	for _, tc := range []struct {
		name string
		req  admissiontest.Request
	}{
		{"the status of a Cluster", admissiontest.Request{Operation: admission.Update, Object: moved, Old: c, Subresource: "status"}},
		{"a policy", admissiontest.Request{Operation: admission.Delete, Old: &policy}},
		{"a new Cluster", admissiontest.Request{Operation: admission.Create, Object: c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, p.Validate(context.Background(), tc.req.Attributes(), nil))
		})
	}
}

// hooked calls after once, after the first list of policies returns: what
// happens while the plugin waits.
type hooked struct {
	versioned.Interface
	after func()
}

func (h *hooked) FlomeshV1alpha1() flomeshv1alpha1.FlomeshV1alpha1Interface {
	return hookedGroup{h.Interface.FlomeshV1alpha1(), h}
}

type hookedGroup struct {
	flomeshv1alpha1.FlomeshV1alpha1Interface
	h *hooked
}

func (g hookedGroup) GlobalTrafficPolicies(namespace string) flomeshv1alpha1.GlobalTrafficPolicyInterface {
	return hookedPolicies{g.FlomeshV1alpha1Interface.GlobalTrafficPolicies(namespace), g.h}
}

type hookedPolicies struct {
	flomeshv1alpha1.GlobalTrafficPolicyInterface
	h *hooked
}

func (p hookedPolicies) List(ctx context.Context, opts metav1.ListOptions) (*v1alpha1.GlobalTrafficPolicyList, error) {
	list, err := p.GlobalTrafficPolicyInterface.List(ctx, opts)
	if after := p.h.after; after != nil {
		p.h.after = nil
		after()
	}
	return list, err
}

func TestAdmittedWriteStoredWhileWaiting(t *testing.T) {
	ref := clusterrefs.Pending{Policy: "httpbin/httpbin", UID: "u1", Expires: metav1.NewTime(now.Add(time.Minute))}
	w := world{clusters: []*v1alpha1.Cluster{withPending(admissiontest.NewCluster("cluster-2", "default"), ref)}}
	p, store := w.build(t)
	p.client = &hooked{Interface: store, after: func() {
		_, err := store.StorePolicy(withUID(admissiontest.NewPolicy("httpbin", "httpbin", key2), "u1"))
		require.NoError(t, err)
	}}
	err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: store.Cluster("cluster-2")}.Attributes(), nil)
	assert.True(t, apierrors.IsForbidden(err), "the policy, stored during the wait, is named: %v", err)
	assert.ErrorContains(t, err, "1 GlobalTrafficPolicy (httpbin/httpbin)")
}

func TestAdmitKeepsReferences(t *testing.T) {
	refs := clusterrefs.Encode([]clusterrefs.Pending{{Policy: "a/b", UID: "u", Expires: metav1.NewTime(now)}})
	annotated := func(v string) *v1alpha1.Cluster {
		c := admissiontest.NewCluster("cluster-2", "default")
		if v != "" {
			c.Annotations = map[string]string{clusterrefs.PendingAnnotation: v, "other": "x"}
		} else {
			c.Annotations = map[string]string{"other": "x"}
		}
		return c
	}
	for _, tc := range []struct {
		name string
		req  admissiontest.Request
		want string // the annotation after admission; "" for none
	}{
		{"a user who drops them", admissiontest.Request{Operation: admission.Update, Object: annotated(""), Old: annotated(refs)}, refs},
		{"a user who edits them", admissiontest.Request{Operation: admission.Update, Object: annotated("[]"), Old: annotated(refs)}, refs},
		{"a user who forges them", admissiontest.Request{Operation: admission.Update, Object: annotated(refs), Old: annotated("")}, ""},
		{"a user who creates a Cluster with them", admissiontest.Request{Operation: admission.Create, Object: annotated(refs)}, ""},
		{"fedmesh itself", admissiontest.Request{Operation: admission.Update, Object: annotated(""), Old: annotated(refs), User: admissiontest.Loopback}, ""},
		{"the status", admissiontest.Request{Operation: admission.Update, Object: annotated(""), Old: annotated(refs), Subresource: "status"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.req.Attributes()
			require.NoError(t, New().Admit(context.Background(), a, nil))
			c := a.GetObject().(*flomesh.Cluster)
			assert.Equal(t, tc.want, c.Annotations[clusterrefs.PendingAnnotation])
			assert.Equal(t, "x", c.Annotations["other"], "other annotations are the user's")
		})
	}
}

func TestNotReady(t *testing.T) {
	t.Parallel()
	p, store := world{clusters: clusters()}.build(t)
	// Never ready; the request waits a moment, not kube's 10 s.
	p.ready = readiness.Gate{Ready: func() bool { return false }, Timeout: 50 * time.Millisecond}
	err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: store.Cluster("cluster-2")}.Attributes(), nil)
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
	assert.Contains(t, factory.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer().GetIndexer().GetIndexers(), clusterrefs.TargetKeyIndex)

	plugins := admission.NewPlugins()
	Register(plugins)
	assert.Contains(t, plugins.Registered(), PluginName)
}
