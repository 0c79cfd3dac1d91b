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
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/pkg/imports"
)

// A store's map is made anew once most of what it held is gone, and its
// content is unchanged by it.
func TestStoreShrinks(t *testing.T) {
	const n = 3 * minShrink
	objs := make([]interface{}, n)
	for i := range objs {
		objs[i] = testService("ns", "s"+strconv.Itoa(i), 80)
	}
	for _, tc := range []struct {
		name string
		fill func(s *store[*corev1.Service, imports.Service])
		// empty removes every object, one way or another.
		empty func(s *store[*corev1.Service, imports.Service])
	}{
		{name: "added, then deleted", fill: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				require.NoError(t, s.Add(o))
			}
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			for i, o := range objs {
				require.NoError(t, s.Delete(o))
				assert.Equal(t, n-i-1, s.Len())
			}
		}},
		{name: "listed, then deleted with their final state unknown", fill: func(s *store[*corev1.Service, imports.Service]) {
			require.NoError(t, s.Replace(objs, "1"))
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				k, _ := cache.MetaNamespaceKeyFunc(o)
				require.NoError(t, s.Delete(cache.DeletedFinalStateUnknown{Key: k, Obj: o}))
			}
		}},
		{name: "updated, then listed empty", fill: func(s *store[*corev1.Service, imports.Service]) {
			for _, o := range objs {
				require.NoError(t, s.Update(o))
			}
		}, empty: func(s *store[*corev1.Service, imports.Service]) {
			require.NoError(t, s.Replace(nil, "2"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(imports.ServiceOf, (*imports.Service).Equal, nil)
			tc.fill(s)
			assert.Equal(t, n, s.Len())
			assert.Equal(t, n, s.peak)
			// Deleting down to a quarter keeps the rest, in a new map.
			for _, o := range objs[:n-n/4] {
				require.NoError(t, s.Delete(o))
			}
			assert.Equal(t, n/4, s.Len())
			assert.Equal(t, n/4, s.peak, "the map was made anew")
			for _, o := range objs[n-n/4:] {
				_, ok := s.Get("ns", o.(*corev1.Service).Name)
				assert.True(t, ok)
			}
			// Back to full, then nothing.
			tc.fill(s)
			tc.empty(s)
			assert.Zero(t, s.Len())
			assert.Empty(t, s.Keys())
			assert.Less(t, s.peak, minShrink, "the room of %d objects was given back", n)
		})
	}
}
