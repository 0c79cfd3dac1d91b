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

// Package admissiontest holds what the tests of fedmesh's admission plugins
// share: fixtures, caches built from them, and Store, a stand-in for the
// server's storage behind a fake clientset that keeps resourceVersions and
// honours their preconditions as etcd does.
package admissiontest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/uuid"
	clienttesting "k8s.io/client-go/testing"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
)

var (
	clustersGVR = v1alpha1.SchemeGroupVersion.WithResource("clusters")
	policiesGVR = v1alpha1.SchemeGroupVersion.WithResource("globaltrafficpolicies")
)

// Store is a fake clientset over objects that get a new resourceVersion on
// every write, and whose updates and patches fail with Conflict when they
// name a resourceVersion that is no longer the stored one.
type Store struct {
	*fake.Clientset
	rv atomic.Int64
}

// NewStore returns a Store holding objs, which get resourceVersions (and
// UIDs, if they have none).
func NewStore(objs ...runtime.Object) *Store {
	s := &Store{Clientset: fake.NewSimpleClientset()}
	for _, obj := range objs {
		obj = obj.DeepCopyObject()
		s.stamp(obj, true)
		if err := s.Tracker().Add(obj); err != nil {
			panic(err)
		}
	}
	for _, resource := range []string{"clusters", "globaltrafficpolicies"} {
		s.PrependReactor("create", resource, s.create)
		s.PrependReactor("update", resource, s.update)
		s.PrependReactor("patch", resource, s.patch)
	}
	return s
}

// stamp gives obj the next resourceVersion, and a UID if it has none and
// isNew.
func (s *Store) stamp(obj runtime.Object, isNew bool) {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(err)
	}
	m.SetResourceVersion(strconv.FormatInt(s.rv.Add(1), 10))
	if isNew && m.GetUID() == "" {
		m.SetUID(uuid.NewUUID())
	}
}

func (s *Store) create(action clienttesting.Action) (bool, runtime.Object, error) {
	obj := action.(clienttesting.CreateAction).GetObject().DeepCopyObject()
	s.stamp(obj, true)
	err := s.Tracker().Create(action.GetResource(), obj, action.GetNamespace())
	return true, obj, err
}

func (s *Store) update(action clienttesting.Action) (bool, runtime.Object, error) {
	obj := action.(clienttesting.UpdateAction).GetObject().DeepCopyObject()
	m, _ := meta.Accessor(obj)
	cur, err := s.Tracker().Get(action.GetResource(), action.GetNamespace(), m.GetName())
	if err != nil {
		return true, nil, err
	}
	if err := precondition(action.GetResource(), cur, m.GetResourceVersion()); err != nil {
		return true, nil, err
	}
	s.stamp(obj, false)
	err = s.Tracker().Update(action.GetResource(), obj, action.GetNamespace())
	return true, obj, err
}

// patch applies JSON merge patches, the kind the plugins send.
func (s *Store) patch(action clienttesting.Action) (bool, runtime.Object, error) {
	pa := action.(clienttesting.PatchAction)
	if pa.GetPatchType() != types.MergePatchType {
		return true, nil, fmt.Errorf("the test store applies merge patches only, not %s", pa.GetPatchType())
	}
	cur, err := s.Tracker().Get(action.GetResource(), action.GetNamespace(), pa.GetName())
	if err != nil {
		return true, nil, err
	}
	var patch struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(pa.GetPatch(), &patch); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if err := precondition(action.GetResource(), cur, patch.Metadata.ResourceVersion); err != nil {
		return true, nil, err
	}
	original, err := json.Marshal(cur)
	if err != nil {
		return true, nil, err
	}
	// A strategic merge patch on types without patch strategies is a
	// merge patch.
	var obj runtime.Object = &v1alpha1.Cluster{}
	if action.GetResource() == policiesGVR {
		obj = &v1alpha1.GlobalTrafficPolicy{}
	}
	patched, err := strategicpatch.StrategicMergePatch(original, pa.GetPatch(), obj)
	if err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if err := json.Unmarshal(patched, obj); err != nil {
		return true, nil, err
	}
	s.stamp(obj, false)
	err = s.Tracker().Update(action.GetResource(), obj, action.GetNamespace())
	return true, obj, err
}

func precondition(gvr schema.GroupVersionResource, cur runtime.Object, rv string) error {
	m, _ := meta.Accessor(cur)
	if rv != "" && rv != m.GetResourceVersion() {
		return apierrors.NewConflict(gvr.GroupResource(), m.GetName(),
			fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	return nil
}

// Cluster returns the stored Cluster of that name, or nil.
func (s *Store) Cluster(name string) *v1alpha1.Cluster {
	c, err := s.FlomeshV1alpha1().Clusters().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return c
}

// Policies returns every stored policy.
func (s *Store) Policies() []v1alpha1.GlobalTrafficPolicy {
	list, err := s.FlomeshV1alpha1().GlobalTrafficPolicies("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		panic(err)
	}
	return list.Items
}

// StorePolicy stores a policy as the storage does once admission let it
// through: a create fails if the name is taken; an update, if the stored
// policy is no longer the version it replaces.
func (s *Store) StorePolicy(p *v1alpha1.GlobalTrafficPolicy) (*v1alpha1.GlobalTrafficPolicy, error) {
	client := s.FlomeshV1alpha1().GlobalTrafficPolicies(p.Namespace)
	if p.ResourceVersion == "" {
		return client.Create(context.Background(), p, metav1.CreateOptions{})
	}
	return client.Update(context.Background(), p, metav1.UpdateOptions{})
}

// DeleteCluster deletes a Cluster as fedmesh's etcd storage does: it
// judges the stored version with validate, then deletes the Cluster only if
// it is still that version, and otherwise judges again. beforeCommit, if
// not nil, runs once between the first judgement and the delete: what other
// requests do in that window.
func (s *Store) DeleteCluster(name string, validate func(*v1alpha1.Cluster) error, beforeCommit func()) error {
	for {
		cur := s.Cluster(name)
		if cur == nil {
			return apierrors.NewNotFound(clustersGVR.GroupResource(), name)
		}
		if err := validate(cur); err != nil {
			return err
		}
		if beforeCommit != nil {
			beforeCommit()
			beforeCommit = nil
		}
		if s.deleteIfVersion(name, cur.ResourceVersion) {
			return nil
		}
	}
}

// deleteIfVersion is etcd's compare-and-delete.
func (s *Store) deleteIfVersion(name, rv string) bool {
	// The fake clientset runs reactions under its lock: holding it makes
	// the compare and the delete one step for every writer.
	s.Lock()
	defer s.Unlock()
	cur, err := s.Tracker().Get(clustersGVR, "", name)
	if err != nil {
		return false
	}
	if m, _ := meta.Accessor(cur); m.GetResourceVersion() != rv {
		return false
	}
	return s.Tracker().Delete(clustersGVR, "", name) == nil
}
