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

package clusterkeys

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	listers "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/admissiontest"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
)

var now = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

// world is what a test starts from: Clusters in storage, and the cache of
// them the plugin reads, which may differ (it lags).
type world struct {
	stored []*v1alpha1.Cluster
	// cached names the stored Clusters the cache has; nil means all.
	cached []string
	// extraCached are in the cache only: deleted or changed since.
	extraCached []*v1alpha1.Cluster
}

func deleting(c *v1alpha1.Cluster) *v1alpha1.Cluster {
	c.DeletionTimestamp = &metav1.Time{Time: now}
	c.Finalizers = []string{"example.com/hold"}
	return c
}

// defaultWorld has cluster-1 in region eu and cluster-2, cluster-3 in the
// default region, and cluster-4 being deleted.
func defaultWorld() world {
	return world{stored: []*v1alpha1.Cluster{
		admissiontest.NewCluster("cluster-1", "eu"),
		admissiontest.NewCluster("cluster-2", "default"),
		admissiontest.NewCluster("cluster-3", "default"),
		deleting(admissiontest.NewCluster("cluster-4", "default")),
	}}
}

func (w world) build(t *testing.T) (*Plugin, *fake.Clientset) {
	t.Helper()
	var objs []runtime.Object
	for _, c := range w.stored {
		objs = append(objs, c)
	}
	store := fake.NewSimpleClientset(objs...)
	var cached []*v1alpha1.Cluster
	for _, c := range w.stored {
		if w.cached == nil || contains(w.cached, c.Name) {
			cached = append(cached, c.DeepCopy())
		}
	}
	for _, c := range w.extraCached {
		c = c.DeepCopy()
		// A version storage no longer has.
		c.ResourceVersion = "999999"
		cached = append(cached, c)
	}
	indexer := admissiontest.ClusterCache(cached...)
	p := New()
	p.clusters = listers.NewClusterLister(indexer)
	p.client = store
	p.authz = testAuthorizer
	require.NoError(t, p.ValidateInitialization())
	return p, store
}

// bob edits namespace httpbin. He may target cluster-1 and cluster-2 from
// there, by a RoleBinding, and may not list Clusters.
var bob = &user.DefaultInfo{Name: "bob"}

// testAuthorizer allows the privileged group everything, and bob what his
// RoleBinding in httpbin would grant.
var testAuthorizer = authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if slices.Contains(a.GetUser().GetGroups(), user.SystemPrivilegedGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	if a.GetUser().GetName() == "bob" && a.GetVerb() == TargetVerb && a.GetNamespace() == "httpbin" &&
		a.GetAPIGroup() == "flomesh.io" && a.GetResource() == "clusters" && (a.GetName() == "cluster-1" || a.GetName() == "cluster-2") {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
})

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// assertReadOnly checks that the plugin only read from storage.
func assertReadOnly(t *testing.T, store *fake.Clientset) {
	t.Helper()
	for _, a := range store.Actions() {
		assert.Equal(t, "get", a.GetVerb(), "the plugin writes nothing: %v", a)
	}
}

// causes returns field: message of each cause of an API error.
func causes(t *testing.T, err error) map[string]string {
	t.Helper()
	var status apierrors.APIStatus
	require.True(t, errors.As(err, &status), "an API error: %v", err)
	out := map[string]string{}
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			out[c.Field] = c.Message
		}
	}
	return out
}

// causeTypes maps the fields of an API error to the types of their causes.
func causeTypes(t *testing.T, err error) map[string][]metav1.CauseType {
	t.Helper()
	var status apierrors.APIStatus
	require.True(t, errors.As(err, &status), "an API error: %v", err)
	out := map[string][]metav1.CauseType{}
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			out[c.Field] = append(out[c.Field], c.Type)
		}
	}
	return out
}

func newPolicy(keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := admissiontest.NewPolicy("httpbin", "httpbin", keys...)
	p.UID = "uid-httpbin"
	return p
}

const (
	key1   = "eu/default/default/cluster-1"
	key2   = "default/default/default/cluster-2"
	key3   = "default/default/default/cluster-3"
	key4   = "default/default/default/cluster-4"
	wrong1 = "default/default/default/cluster-1"
)

func TestCreate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		world world
		keys  []string
		// wantErrs maps fields to substrings of their messages; none means
		// admitted.
		wantErrs map[string][]string
		// user writes the policy; the admin when nil.
		user user.Info
		// wantForbidden lists the fields refused for want of "target".
		wantForbidden []string
	}{
		{
			name: "a user allowed to target in the policy's namespace is admitted", world: defaultWorld(), user: bob,
			keys: []string{key2},
		},
		{
			// Same answer whether the Cluster exists or not: no oracle.
			name: "a user not allowed to target learns nothing of the keys", world: defaultWorld(), user: bob,
			keys:          []string{key3, "default/default/default/nowhere"},
			wantErrs:      map[string][]string{"spec.targets[0].clusterKey": {`targeting the Cluster "cluster-3" needs the verb "target"`}, "spec.targets[1].clusterKey": {`targeting the Cluster "nowhere" needs the verb "target"`}},
			wantForbidden: []string{"spec.targets[0].clusterKey", "spec.targets[1].clusterKey"},
		},
		{
			name: "a user who may not list Clusters gets no hint", world: defaultWorld(), user: bob,
			keys:     []string{wrong1},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {"no registered Cluster has this key"}},
		},
		{
			name: "registered keys are admitted", world: defaultWorld(),
			keys: []string{key1, key2},
		},
		{
			name: "a policy without targets is admitted", world: defaultWorld(),
		},
		{
			name: "a repeated key is admitted", world: defaultWorld(),
			keys: []string{key2, key2},
		},
		{
			name: "the default region does not name a Cluster of another region", world: defaultWorld(),
			keys: []string{wrong1},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {
				`"default/default/default/cluster-1"`, "no registered Cluster has this key", `did you mean "eu/default/default/cluster-1"?`,
			}},
		},
		{
			name: "the field of the bad target is named", world: defaultWorld(),
			keys:     []string{key2, wrong1, key3},
			wantErrs: map[string][]string{"spec.targets[1].clusterKey": {`did you mean "eu/default/default/cluster-1"?`}},
		},
		{
			name: "every bad target is named", world: defaultWorld(),
			keys: []string{"default/default/default/nowhere", key2, wrong1},
			wantErrs: map[string][]string{
				"spec.targets[0].clusterKey": {"no registered Cluster has this key"},
				"spec.targets[2].clusterKey": {`did you mean "eu/default/default/cluster-1"?`},
			},
		},
		{
			name: "a typo suggests the closest key", world: defaultWorld(),
			keys:     []string{"default/default/default/cluster-22"},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {`did you mean "default/default/default/cluster-2"?`}},
		},
		{
			name: "a key far from every registered one suggests nothing", world: defaultWorld(),
			keys:     []string{"us/west/blue/faraway"},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {"no registered Cluster has this key"}},
		},
		{
			name: "a malformed key is refused naming the field", world: defaultWorld(),
			keys: []string{key2, "default/cluster-3"},
			wantErrs: map[string][]string{"spec.targets[1].clusterKey": {
				"must have the form region/zone/group/name", `did you mean "default/default/default/cluster-3"?`,
			}},
		},
		{
			name: "an empty key is refused", world: defaultWorld(),
			keys:     []string{""},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {"Required value"}},
		},
		{
			name: "a Cluster being deleted cannot be targeted", world: defaultWorld(),
			keys:     []string{key4},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {`Cluster "cluster-4", of this key, is being deleted`}},
		},
		{
			name: "a Cluster the cache does not have yet is found in storage",
			world: world{
				stored: []*v1alpha1.Cluster{admissiontest.NewCluster("cluster-2", "default")},
				cached: []string{},
			},
			keys: []string{key2},
		},
		{
			name: "a Cluster deleted but still cached is refused",
			world: world{
				extraCached: []*v1alpha1.Cluster{admissiontest.NewCluster("cluster-2", "default")},
			},
			keys:     []string{key2},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {"no registered Cluster has this key"}},
		},
		{
			name: "a Cluster re-keyed but cached with its old key is refused",
			world: world{
				stored:      []*v1alpha1.Cluster{admissiontest.NewCluster("cluster-2", "us")},
				cached:      []string{},
				extraCached: []*v1alpha1.Cluster{admissiontest.NewCluster("cluster-2", "default")},
			},
			keys:     []string{key2},
			wantErrs: map[string][]string{"spec.targets[0].clusterKey": {`did you mean "us/default/default/cluster-2"?`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, store := tc.world.build(t)
			policy := newPolicy(tc.keys...)
			err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Create, Object: policy, User: tc.user}.Attributes(), nil)
			if len(tc.wantErrs) == 0 {
				require.NoError(t, err)
			} else {
				if tc.user != nil {
					assert.NotContains(t, err.Error(), "did you mean", "no hint for a user who may not list Clusters")
				}
				for _, f := range tc.wantForbidden {
					assert.Contains(t, causeTypes(t, err)[f], metav1.CauseType(field.ErrorTypeForbidden), "cause of %s", f)
				}
				require.Error(t, err)
				assert.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
				got := causes(t, err)
				assert.Len(t, got, len(tc.wantErrs), "causes: %v", got)
				for field, subs := range tc.wantErrs {
					for _, sub := range subs {
						assert.Contains(t, got[field], sub, "cause of %s", field)
					}
				}
				assert.NotContains(t, err.Error(), "did you mean \"\"")
			}
			assertReadOnly(t, store)
		})
	}
}

func TestUpdate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new []string
		wantErr  string
	}{
		{
			name: "a key already named is not judged again",
			old:  []string{"default/default/default/gone", key2}, new: []string{"default/default/default/gone", key2},
		},
		{
			name: "a key already named may move in the list",
			old:  []string{"default/default/default/gone"}, new: []string{key2, "default/default/default/gone"},
		},
		{
			name: "an added key is judged",
			old:  []string{key2}, new: []string{key2, wrong1},
			wantErr: "spec.targets[1].clusterKey",
		},
		{
			name: "an added key is admitted",
			old:  []string{key2}, new: []string{key2, key3},
		},
		{
			name: "removing keys needs no Cluster",
			old:  []string{key2, "default/default/default/gone"}, new: []string{key2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, store := defaultWorld().build(t)
			old := newPolicy(tc.old...)
			old.ResourceVersion = "77"
			updated := newPolicy(tc.new...)
			updated.ResourceVersion = "77"
			err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Update, Object: updated, Old: old}.Attributes(), nil)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, causes(t, err), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assertReadOnly(t, store)
		})
	}
}

func TestIgnored(t *testing.T) {
	bad := newPolicy(wrong1)
	for _, tc := range []struct {
		name string
		req  admissiontest.Request
	}{
		{"the status of a policy", admissiontest.Request{Operation: admission.Update, Object: bad, Old: bad, Subresource: "status"}},
		{"a Cluster", admissiontest.Request{Operation: admission.Create, Object: admissiontest.NewCluster("x", "default")}},
		{"the delete of a policy", admissiontest.Request{Operation: admission.Delete, Old: bad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := defaultWorld().build(t)
			assert.NoError(t, p.Validate(context.Background(), tc.req.Attributes(), nil))
		})
	}
}

func TestDryRunIsJudged(t *testing.T) {
	p, _ := defaultWorld().build(t)
	err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Create, Object: newPolicy(key2), DryRun: true}.Attributes(), nil)
	require.NoError(t, err)

	err = p.Validate(context.Background(), admissiontest.Request{Operation: admission.Create, Object: newPolicy(wrong1), DryRun: true}.Attributes(), nil)
	assert.True(t, apierrors.IsInvalid(err), "a dry run is judged all the same: %v", err)
}

func TestNotReady(t *testing.T) {
	t.Parallel()
	p, _ := defaultWorld().build(t)
	// Never ready; the request waits a moment, not kube's 10 s.
	p.ready = readiness.Gate{Ready: func() bool { return false }, Timeout: 50 * time.Millisecond}
	err := p.Validate(context.Background(), admissiontest.Request{Operation: admission.Create, Object: newPolicy(key2)}.Attributes(), nil)
	assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	assert.Contains(t, err.Error(), "not yet ready")
}

func TestInitialization(t *testing.T) {
	p := New()
	assert.Error(t, p.ValidateInitialization(), "without informers and client")

	client := fake.NewSimpleClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	p.SetFedmeshInformerFactory(factory)
	p.SetFedmeshClientset(client)
	assert.Error(t, p.ValidateInitialization(), "without an authorizer")
	p.SetAuthorizer(testAuthorizer)
	require.NoError(t, p.ValidateInitialization())

	plugins := admission.NewPlugins()
	Register(plugins)
	assert.Contains(t, plugins.Registered(), PluginName)
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"abc", "abc", 0},
		{"cluster-1", "cluster-2", 1}, {"cluster-1", "cluster-12", 1}, {"kitten", "sitting", 3},
	} {
		assert.Equal(t, tc.want, distance(tc.a, tc.b), "%q %q", tc.a, tc.b)
		assert.Equal(t, tc.want, distance(tc.b, tc.a), "%q %q", tc.b, tc.a)
	}
}
