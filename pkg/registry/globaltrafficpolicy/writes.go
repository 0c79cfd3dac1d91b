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
package globaltrafficpolicy

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

// Writes knows which cluster keys the policy writes in progress in this
// server name: from before their admission to the end of their storage
// write, whatever its outcome.
//
// Admission judges a policy's targets before the storage writes it, so a
// write admitted while its Cluster was live may be stored after the
// Cluster's deletion began, and after a fresh list of policies showed
// nothing. The cluster-protection controller asks Writes before that list,
// and releases a Cluster only once no such write names it: a write that
// began later was admitted against a Cluster already being deleted, and
// refused.
type Writes struct {
	mu   sync.Mutex
	keys map[string]int
}

// NewWrites returns a Writes with no write in progress.
func NewWrites() *Writes {
	return &Writes{keys: map[string]int{}}
}

// Naming reports whether a policy write in progress names key.
func (w *Writes) Naming(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keys[key] > 0
}

// write is what one request holds.
type write struct {
	w    *Writes
	held sets.Set[string]
}

func (w *Writes) start() *write {
	return &write{w: w, held: sets.New[string]()}
}

// hold adds the targets of obj to what the request holds. An update is
// tried again when storage finds a newer version, with the targets of that
// version: a request holds the targets of every try.
func (r *write) hold(obj runtime.Object) {
	p, ok := obj.(*flomesh.GlobalTrafficPolicy)
	if !ok {
		return
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for _, t := range p.Spec.Targets {
		if !r.held.Has(t.ClusterKey) {
			r.held.Insert(t.ClusterKey)
			r.w.keys[t.ClusterKey]++
		}
	}
}

func (r *write) done() {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for key := range r.held {
		if r.w.keys[key]--; r.w.keys[key] <= 0 {
			delete(r.w.keys, key)
		}
	}
}

// createValidation holds the targets of the object, then admits it.
func (r *write) createValidation(admit rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	return func(ctx context.Context, obj runtime.Object) error {
		r.hold(obj)
		if admit == nil {
			return nil
		}
		return admit(ctx, obj)
	}
}

// updateValidation holds the targets of the new object, then admits it.
func (r *write) updateValidation(admit rest.ValidateObjectUpdateFunc) rest.ValidateObjectUpdateFunc {
	return func(ctx context.Context, obj, old runtime.Object) error {
		r.hold(obj)
		if admit == nil {
			return nil
		}
		return admit(ctx, obj, old)
	}
}

// Create stores a new policy, holding its targets in Writes until the
// write is done. The validating admission of the request runs inside it.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	w := r.writes.start()
	defer w.done()
	return r.Store.Create(ctx, obj, w.createValidation(createValidation), options)
}

// Update changes a policy (updates, patches and server-side applies),
// holding its targets in Writes until the write is done.
func (r *REST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	w := r.writes.start()
	defer w.done()
	return r.Store.Update(ctx, name, objInfo, w.createValidation(createValidation), w.updateValidation(updateValidation), forceAllowCreate, options)
}
