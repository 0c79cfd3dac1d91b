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
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/pkg/imports"
)

// The member caches.
//
// fedmesh-apiserver caches every ServiceExport and every Service of every
// member, so the cost of one cached object multiplies by the size of the
// federation. Held by a SharedIndexInformer, even trimmed, a Service cost
// about 1.3 KB (the corev1.Service struct, its decoded ports, the
// informer's thread-safe map and namespace index) and a ServiceExport
// about 0.7 KB, while the import computation reads a handful of fields of
// each. A store therefore takes the place of the informer's DeltaFIFO and
// indexer: its Reflector writes into it directly, and it keeps, per
// object, only the computation's input, imports.ServiceExport or
// imports.Service, which it hands to the computation as it is. The decoded
// object is garbage as soon as the store has converted it; what stays is
// about 320 bytes per Service and 370 per ServiceExport, their key and map
// entry included (BenchmarkStoreHeap).

// objectKey is the namespace and name of a cached object.
type objectKey struct {
	namespace, name string
}

// store is a cache.ReflectorStore that keeps, for each object of type O,
// the value T that slim makes of it, keyed by namespace and name. It
// has no index and no event queue: it calls onChange, outside its lock,
// for every object that was added, deleted or changed (as equal sees the
// slim values), and a Reflector is its only writer.
//
// The values are never modified once stored: Get hands out pointers that
// stay valid, and unchanged, after the lock is released.
type store[O metav1.Object, T any] struct {
	slim     func(O) *T
	equal    func(a, b *T) bool
	onChange func(namespace, name string)

	mu    sync.RWMutex
	items map[objectKey]*T
	// peak is the most items held since items was made: a Go map keeps
	// the room of its largest size, so once it holds a quarter of that,
	// it is made anew (shrink).
	peak   int
	synced atomic.Bool
}

var _ cache.ReflectorStore = &store[*corev1.Service, imports.Service]{}

// newStore returns an empty store. onChange may be nil.
func newStore[O metav1.Object, T any](slim func(O) *T, equal func(a, b *T) bool, onChange func(namespace, name string)) *store[O, T] {
	if onChange == nil {
		onChange = func(string, string) {}
	}
	return &store[O, T]{slim: slim, equal: equal, onChange: onChange, items: map[objectKey]*T{}}
}

// convert returns the key and slim value of obj.
func (s *store[O, T]) convert(obj interface{}) (objectKey, *T, error) {
	o, ok := obj.(O)
	if !ok {
		return objectKey{}, nil, fmt.Errorf("unexpected object of type %T", obj)
	}
	return objectKey{namespace: o.GetNamespace(), name: o.GetName()}, s.slim(o), nil
}

// Add stores obj and always reports it.
func (s *store[O, T]) Add(obj interface{}) error {
	k, v, err := s.convert(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.items[k] = v
	s.peak = max(s.peak, len(s.items))
	s.mu.Unlock()
	s.onChange(k.namespace, k.name)
	return nil
}

// Update stores obj and reports it when its slim value changed.
func (s *store[O, T]) Update(obj interface{}) error {
	k, v, err := s.convert(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old, found := s.items[k]
	changed := !found || !s.equal(old, v)
	if changed {
		s.items[k] = v
		s.peak = max(s.peak, len(s.items))
	}
	s.mu.Unlock()
	if changed {
		s.onChange(k.namespace, k.name)
	}
	return nil
}

// Delete forgets obj, which may be a cache.DeletedFinalStateUnknown, and
// always reports it.
func (s *store[O, T]) Delete(obj interface{}) error {
	var k objectKey
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		ns, name, err := cache.SplitMetaNamespaceKey(d.Key)
		if err != nil {
			return err
		}
		k = objectKey{namespace: ns, name: name}
	} else if o, ok := obj.(O); ok {
		k = objectKey{namespace: o.GetNamespace(), name: o.GetName()}
	} else {
		return fmt.Errorf("unexpected object of type %T", obj)
	}
	s.mu.Lock()
	delete(s.items, k)
	s.shrink()
	s.mu.Unlock()
	s.onChange(k.namespace, k.name)
	return nil
}

// minShrink is the fewest items whose room a store gives back: below, a
// map costs little, and making it anew would cost more.
const minShrink = 1024

// shrink makes items anew when it holds a quarter of its peak, so that a
// member whose exports or Services went away costs what it holds now.
// Each item is copied once for every three deleted, which keeps deletion
// constant in the long run. Called with s.mu held for writing.
func (s *store[O, T]) shrink() {
	if s.peak < minShrink || len(s.items) > s.peak/4 {
		return
	}
	items := make(map[objectKey]*T, len(s.items))
	for k, v := range s.items {
		items[k] = v
	}
	s.items, s.peak = items, len(items)
}

// Replace makes list the store's content, reports every object that
// appeared, changed or disappeared, and marks the store synced.
func (s *store[O, T]) Replace(list []interface{}, _ string) error {
	keys := make([]objectKey, len(list))
	values := make([]*T, len(list))
	for i, obj := range list {
		k, v, err := s.convert(obj)
		if err != nil {
			return err
		}
		keys[i], values[i] = k, v
	}
	var changed []objectKey
	s.mu.Lock()
	items := make(map[objectKey]*T, len(list))
	for i, k := range keys {
		v := values[i]
		if old, found := s.items[k]; !found || !s.equal(old, v) {
			changed = append(changed, k)
		} else {
			// Keep the stored value, which is equal; the new one is
			// garbage.
			v = old
		}
		items[k] = v
	}
	for k := range s.items {
		if _, found := items[k]; !found {
			changed = append(changed, k)
		}
	}
	// A map made for the list: the room of the former one goes with it.
	s.items, s.peak = items, len(items)
	s.mu.Unlock()
	s.synced.Store(true)
	for _, k := range changed {
		s.onChange(k.namespace, k.name)
	}
	return nil
}

// Resync does nothing: the store has no queue to replay.
func (s *store[O, T]) Resync() error { return nil }

// HasSynced reports whether the store has received its first list.
func (s *store[O, T]) HasSynced() bool { return s.synced.Load() }

// Get returns the slim value of namespace/name. It must not be modified.
func (s *store[O, T]) Get(namespace, name string) (*T, bool) {
	s.mu.RLock()
	v, ok := s.items[objectKey{namespace: namespace, name: name}]
	s.mu.RUnlock()
	return v, ok
}

// Has reports whether the store holds namespace/name.
func (s *store[O, T]) Has(namespace, name string) bool {
	_, ok := s.Get(namespace, name)
	return ok
}

// Len returns how many objects the store holds.
func (s *store[O, T]) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// Keys returns namespace/name of every object the store holds.
func (s *store[O, T]) Keys() [][2]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([][2]string, 0, len(s.items))
	for k := range s.items {
		keys = append(keys, [2]string{k.namespace, k.name})
	}
	return keys
}
