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
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/clusterkeys"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/admissiontest"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/clusterrefs"
)

// federation runs both plugins as the server does, fed by informers over a
// Store, and plays the storage's part in the requests they judge.
type federation struct {
	store  *admissiontest.Store
	keys   *clusterkeys.Plugin
	inUse  *Plugin
	cancel context.CancelFunc
}

func newFederation(t *testing.T, objs ...runtime.Object) *federation {
	t.Helper()
	store := admissiontest.NewStore(objs...)
	factory := informers.NewSharedInformerFactory(store, 0)
	keys := clusterkeys.New()
	inUse := New()
	keys.SetFedmeshInformerFactory(factory)
	inUse.SetFedmeshInformerFactory(factory)
	keys.SetFedmeshClientset(store)
	inUse.SetFedmeshClientset(store)
	// The requests are the admin's.
	keys.SetAuthorizer(authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup))
	require.NoError(t, keys.ValidateInitialization())
	require.NoError(t, inUse.ValidateInitialization())
	inUse.wait = wait.Backoff{Steps: 3, Duration: time.Millisecond}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		require.True(t, ok, "%v synced", typ)
	}
	return &federation{store: store, keys: keys, inUse: inUse, cancel: cancel}
}

// admitPolicy is the admission of a policy create; the storage would write
// it next.
func (f *federation) admitPolicy(p *v1alpha1.GlobalTrafficPolicy, dryRun bool) error {
	if p.UID == "" {
		p.UID = uuid.NewUUID()
	}
	return f.keys.Validate(context.Background(), admissiontest.Request{Operation: admission.Create, Object: p, DryRun: dryRun}.Attributes(), nil)
}

// createPolicy is a whole policy create: admission, then the write.
func (f *federation) createPolicy(p *v1alpha1.GlobalTrafficPolicy) error {
	if err := f.admitPolicy(p, false); err != nil {
		return err
	}
	_, err := f.store.StorePolicy(p)
	return err
}

// updatePolicy is a whole policy update, from the stored version.
func (f *federation) updatePolicy(namespace, name string, change func(*v1alpha1.GlobalTrafficPolicy)) error {
	for _, old := range f.store.Policies() {
		if old.Namespace != namespace || old.Name != name {
			continue
		}
		updated := old.DeepCopy()
		change(updated)
		err := f.keys.Validate(context.Background(), admissiontest.Request{Operation: admission.Update, Object: updated, Old: &old}.Attributes(), nil)
		if err != nil {
			return err
		}
		_, err = f.store.StorePolicy(updated)
		return err
	}
	return fmt.Errorf("no policy %s/%s", namespace, name)
}

// deleteCluster is a whole Cluster delete, as the storage runs it:
// admission judges the stored version, and the delete happens only if the
// Cluster is still that version.
func (f *federation) deleteCluster(name string, beforeCommit func()) error {
	return f.store.DeleteCluster(name, func(cur *v1alpha1.Cluster) error {
		return f.inUse.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: cur}.Attributes(), nil)
	}, beforeCommit)
}

// dangling returns the targets of stored policies that no Cluster has.
func (f *federation) dangling(t *testing.T) []string {
	t.Helper()
	clusters, err := f.store.FlomeshV1alpha1().Clusters().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	keys := sets.New[string]()
	for i := range clusters.Items {
		keys.Insert(clusterrefs.KeyOf(&clusters.Items[i]))
	}
	var out []string
	for _, p := range f.store.Policies() {
		for _, target := range p.Spec.Targets {
			if !keys.Has(target.ClusterKey) {
				out = append(out, p.Namespace+"/"+p.Name+" -> "+target.ClusterKey)
			}
		}
	}
	return out
}

// The window: a policy admitted, then its Cluster deleted before the policy
// is stored.
func TestRaceAdmittedPolicyHoldsItsCluster(t *testing.T) {
	f := newFederation(t, admissiontest.NewCluster("cluster-2", "default"))
	policy := admissiontest.NewPolicy("httpbin", "httpbin", key2)
	require.NoError(t, f.admitPolicy(policy, false))

	err := f.deleteCluster("cluster-2", nil)
	assert.True(t, apierrors.IsConflict(err), "the admitted policy is not stored yet: want Conflict, got %v", err)

	_, err = f.store.StorePolicy(policy)
	require.NoError(t, err)
	err = f.deleteCluster("cluster-2", nil)
	assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	assert.ErrorContains(t, err, "httpbin/httpbin")
	assert.Empty(t, f.dangling(t))

	// Once the policy stops naming it, the Cluster can go at once.
	require.NoError(t, f.updatePolicy("httpbin", "httpbin", func(p *v1alpha1.GlobalTrafficPolicy) { p.Spec.Targets = nil }))
	require.NoError(t, f.deleteCluster("cluster-2", nil))
	assert.Empty(t, f.dangling(t))
}

// The window the other way round: the Cluster delete judged, then a policy
// admitted before the delete is written.
func TestRacePolicyAdmittedBetweenJudgementAndDelete(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stored: the policy is stored too before the delete commits.
		stored bool
		want   func(error) bool
	}{
		{"not stored yet when judged again", false, apierrors.IsConflict},
		{"stored when judged again", true, apierrors.IsForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFederation(t, admissiontest.NewCluster("cluster-2", "default"))
			policy := admissiontest.NewPolicy("httpbin", "httpbin", key2)
			err := f.deleteCluster("cluster-2", func() {
				require.NoError(t, f.admitPolicy(policy, false), "the Cluster is still there")
				if tc.stored {
					_, err := f.store.StorePolicy(policy)
					require.NoError(t, err)
				}
			})
			assert.True(t, tc.want(err), "the recorded reference changed the Cluster, so the delete was judged again: got %v", err)
			if !tc.stored {
				_, err := f.store.StorePolicy(policy)
				require.NoError(t, err)
			}
			assert.NotNil(t, f.store.Cluster("cluster-2"))
			assert.Empty(t, f.dangling(t))
		})
	}
}

// Without the recorded reference, the same interleaving leaves the policy
// naming nothing: what the tests above would catch.
func TestRaceWithoutReferenceDangles(t *testing.T) {
	f := newFederation(t, admissiontest.NewCluster("cluster-2", "default"))
	policy := admissiontest.NewPolicy("httpbin", "httpbin", key2)
	err := f.deleteCluster("cluster-2", func() {
		// A dry run judges alike but records nothing.
		require.NoError(t, f.admitPolicy(policy, true))
	})
	require.NoError(t, err)
	_, err = f.store.StorePolicy(policy)
	require.NoError(t, err)
	assert.Equal(t, []string{"httpbin/httpbin -> " + key2}, f.dangling(t))
}

// A Cluster deleted first refuses the policy.
func TestRaceDeletedClusterRefusesPolicy(t *testing.T) {
	f := newFederation(t, admissiontest.NewCluster("cluster-2", "default"))
	require.NoError(t, f.deleteCluster("cluster-2", nil))
	err := f.createPolicy(admissiontest.NewPolicy("httpbin", "httpbin", key2))
	assert.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
	assert.Empty(t, f.dangling(t))
}

// Deleting a policy right after creating it frees its Cluster at once: its
// reference is settled on delete.
func TestRacePolicyDeletedThenCluster(t *testing.T) {
	f := newFederation(t, admissiontest.NewCluster("cluster-2", "default"))
	policy := admissiontest.NewPolicy("httpbin", "httpbin", key2)
	require.NoError(t, f.createPolicy(policy))
	stored := f.store.Policies()[0]
	require.NoError(t, f.keys.Validate(context.Background(), admissiontest.Request{Operation: admission.Delete, Old: &stored}.Attributes(), nil))
	require.NoError(t, f.store.FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Delete(context.Background(), "httpbin", metav1.DeleteOptions{}))
	require.NoError(t, f.deleteCluster("cluster-2", nil))
}

// Creates and deletes at once, many times over: never both, and no policy
// is left naming nothing.
func TestRaceConcurrent(t *testing.T) {
	const n = 60
	var objs []runtime.Object
	for i := range n {
		objs = append(objs, admissiontest.NewCluster(fmt.Sprintf("c-%02d", i), "default"))
	}
	f := newFederation(t, objs...)

	start := make(chan struct{})
	var wg sync.WaitGroup
	created := make([]error, n)
	deleted := make([]error, n)
	for i := range n {
		name := fmt.Sprintf("c-%02d", i)
		key := "default/default/default/" + name
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			// Policies also name a Cluster that stays, so that creates
			// conflict with one another on it.
			created[i] = f.createPolicy(admissiontest.NewPolicy("race", fmt.Sprintf("p-%02d", i), key, "default/default/default/c-00"))
		}()
		go func() {
			defer wg.Done()
			<-start
			if i == 0 {
				return
			}
			deleted[i] = f.deleteCluster(name, nil)
		}()
	}
	close(start)
	wg.Wait()

	var both, policies, clusters int
	for i := 1; i < n; i++ {
		if created[i] == nil {
			policies++
		} else {
			assert.True(t, apierrors.IsInvalid(created[i]) || apierrors.IsConflict(created[i]), "policy %d: %v", i, created[i])
		}
		if deleted[i] == nil {
			clusters++
		} else {
			assert.True(t, apierrors.IsForbidden(deleted[i]) || apierrors.IsConflict(deleted[i]), "cluster %d: %v", i, deleted[i])
		}
		if created[i] == nil && deleted[i] == nil {
			both++
		}
	}
	t.Logf("of %d pairs: %d policies created, %d clusters deleted", n-1, policies, clusters)
	assert.Zero(t, both, "a policy and the deletion of its target both went through")
	assert.Empty(t, f.dangling(t))
}
