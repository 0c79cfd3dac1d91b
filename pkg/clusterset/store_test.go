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
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

func testService(namespace, name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: "10.0.0.1",
			Ports:     []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port}},
		},
	}
}

// recorder collects the keys a store reports.
type recorder struct{ keys [][2]string }

func (r *recorder) onChange(namespace, name string) {
	r.keys = append(r.keys, [2]string{namespace, name})
}

func (r *recorder) sorted() [][2]string {
	keys := slices.Clone(r.keys)
	slices.SortFunc(keys, func(a, b [2]string) int {
		return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1])
	})
	return keys
}

func TestStore(t *testing.T) {
	a80 := testService("ns", "a", 80)
	b80 := testService("ns", "b", 80)
	c80 := testService("ns", "c", 80)
	a81 := testService("ns", "a", 81)
	// a80status differs from a80 only in what the cache does not keep.
	a80status := a80.DeepCopy()
	a80status.ResourceVersion = "7"
	a80status.Labels = map[string]string{"app": "a"}
	a80status.Spec.Ports[0].TargetPort = intstr.FromInt32(8080)
	a80status.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}

	type op func(s *store[*corev1.Service, imports.Service]) error
	add := func(o interface{}) op {
		return func(s *store[*corev1.Service, imports.Service]) error { return s.Add(o) }
	}
	update := func(o interface{}) op {
		return func(s *store[*corev1.Service, imports.Service]) error { return s.Update(o) }
	}
	del := func(o interface{}) op {
		return func(s *store[*corev1.Service, imports.Service]) error { return s.Delete(o) }
	}
	replace := func(objs ...interface{}) op {
		return func(s *store[*corev1.Service, imports.Service]) error { return s.Replace(objs, "1") }
	}

	tests := []struct {
		name string
		// setup runs before recording.
		setup []op
		ops   []op
		want  [][2]string
		// keys are those the store holds at the end.
		keys [][2]string
		// port is that of ns/a at the end, 0 when absent.
		port   int32
		synced bool
	}{{
		name: "add reports",
		ops:  []op{add(a80)},
		want: [][2]string{{"ns", "a"}},
		keys: [][2]string{{"ns", "a"}},
		port: 80,
	}, {
		name:  "add of a known object reports",
		setup: []op{add(a80)},
		ops:   []op{add(a80)},
		want:  [][2]string{{"ns", "a"}},
		keys:  [][2]string{{"ns", "a"}},
		port:  80,
	}, {
		name:  "update that changes no cached field is silent",
		setup: []op{add(a80)},
		ops:   []op{update(a80status)},
		keys:  [][2]string{{"ns", "a"}},
		port:  80,
	}, {
		name:  "update that changes a port reports",
		setup: []op{add(a80)},
		ops:   []op{update(a81)},
		want:  [][2]string{{"ns", "a"}},
		keys:  [][2]string{{"ns", "a"}},
		port:  81,
	}, {
		name: "update of an unknown object reports",
		ops:  []op{update(a81)},
		want: [][2]string{{"ns", "a"}},
		keys: [][2]string{{"ns", "a"}},
		port: 81,
	}, {
		name:  "delete reports",
		setup: []op{add(a80), add(b80)},
		ops:   []op{del(a80)},
		want:  [][2]string{{"ns", "a"}},
		keys:  [][2]string{{"ns", "b"}},
	}, {
		name:  "delete of a final state unknown reports",
		setup: []op{add(a80), add(b80)},
		ops:   []op{del(cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: a80})},
		want:  [][2]string{{"ns", "a"}},
		keys:  [][2]string{{"ns", "b"}},
	}, {
		name:  "delete of a final state unknown without object reports",
		setup: []op{add(a80)},
		ops:   []op{del(cache.DeletedFinalStateUnknown{Key: "ns/a"})},
		want:  [][2]string{{"ns", "a"}},
	}, {
		name:   "first replace reports everything and syncs",
		ops:    []op{replace(a80, b80)},
		want:   [][2]string{{"ns", "a"}, {"ns", "b"}},
		keys:   [][2]string{{"ns", "a"}, {"ns", "b"}},
		port:   80,
		synced: true,
	}, {
		name:   "replace reports what appeared, changed or disappeared",
		setup:  []op{replace(a80, b80)},
		ops:    []op{replace(a81, c80)},
		want:   [][2]string{{"ns", "a"}, {"ns", "b"}, {"ns", "c"}},
		keys:   [][2]string{{"ns", "a"}, {"ns", "c"}},
		port:   81,
		synced: true,
	}, {
		name:   "replace with the same content is silent",
		setup:  []op{replace(a80, b80)},
		ops:    []op{replace(a80status, b80)},
		keys:   [][2]string{{"ns", "a"}, {"ns", "b"}},
		port:   80,
		synced: true,
	}, {
		name:   "empty replace syncs",
		ops:    []op{replace()},
		synced: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			recording := false
			s := newStore(imports.ServiceOf, (*imports.Service).Equal, func(ns, name string) {
				if recording {
					r.onChange(ns, name)
				}
			})
			for _, o := range tt.setup {
				if err := o(s); err != nil {
					t.Fatal(err)
				}
			}
			recording = true
			for _, o := range tt.ops {
				if err := o(s); err != nil {
					t.Fatal(err)
				}
			}
			if got := r.sorted(); !reflect.DeepEqual(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
				t.Errorf("reported %v, want %v", got, tt.want)
			}
			keys := s.Keys()
			slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[1], b[1]) })
			if !reflect.DeepEqual(keys, tt.keys) && (len(keys) != 0 || len(tt.keys) != 0) {
				t.Errorf("keys %v, want %v", keys, tt.keys)
			}
			if s.Len() != len(tt.keys) {
				t.Errorf("Len() = %d, want %d", s.Len(), len(tt.keys))
			}
			var port int32
			if v, ok := s.Get("ns", "a"); ok {
				port = v.Ports[0].Port
			}
			if port != tt.port {
				t.Errorf("port of ns/a = %d, want %d", port, tt.port)
			}
			if s.HasSynced() != tt.synced {
				t.Errorf("HasSynced() = %v, want %v", s.HasSynced(), tt.synced)
			}
		})
	}
}

func TestStoreRejectsOtherTypes(t *testing.T) {
	s := newStore(imports.ServiceOf, (*imports.Service).Equal, nil)
	e := &v1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	if s.Add(e) == nil || s.Update(e) == nil || s.Delete(e) == nil || s.Replace([]interface{}{e}, "1") == nil {
		t.Error("a ServiceExport was accepted by a store of Services")
	}
	if s.Len() != 0 || s.HasSynced() {
		t.Error("a rejected object changed the store")
	}
}

// TestMemberCaches checks that a Service is reported only while an export
// names it.
func TestMemberCaches(t *testing.T) {
	var r recorder
	c := newMemberCaches(r.onChange)
	export := &v1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	steps := []struct {
		name string
		do   func() error
		want [][2]string
	}{
		{"unexported Service", func() error { return c.services.Replace([]interface{}{testService("ns", "a", 80)}, "1") }, nil},
		{"export", func() error { return c.exports.Replace([]interface{}{export}, "1") }, [][2]string{{"ns", "a"}}},
		{"exported Service", func() error { return c.services.Update(testService("ns", "a", 81)) }, [][2]string{{"ns", "a"}}},
		{"other Service", func() error { return c.services.Add(testService("ns", "b", 80)) }, nil},
		{"export deleted", func() error { return c.exports.Delete(export) }, [][2]string{{"ns", "a"}}},
		{"Service of a deleted export", func() error { return c.services.Update(testService("ns", "a", 82)) }, nil},
	}
	for _, s := range steps {
		r.keys = nil
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !reflect.DeepEqual(r.keys, s.want) {
			t.Errorf("%s: reported %v, want %v", s.name, r.keys, s.want)
		}
	}
	for _, synced := range c.synced {
		if !synced() {
			t.Error("caches not synced after their first lists")
		}
	}
}

// decoded returns obj as a client decodes it from the API: times in the
// local time zone, every string its own.
func decoded[T any](t testing.TB, obj *T) *T {
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMemberExport checks that a member hands the import computation the
// values its caches hold, each export with the Service of its name, and
// that the computation over them is the computation over the objects.
func TestMemberExport(t *testing.T) {
	created := metav1.NewTime(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	export := decoded(t, &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "export-uid", Generation: 3, CreationTimestamp: created,
			Labels: map[string]string{"app": "db"}},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: "client",
			Rules:              []v1alpha1.ServiceExportRule{{PortNumber: 5432, Path: "/db", PathType: "Prefix"}},
			LoadBalancer:       "RoundRobinLoadBalancer",
			TargetClusters:     []string{"r/z/g/other"},
		},
	})
	unserved := decoded(t, &v1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lonely"}})
	svc := decoded(t, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432, AppProtocol: ptr.To("postgresql")}},
		},
	})
	info := imports.Cluster{Name: "c0", Key: "r/z/g/c0", GatewayHost: "192.0.2.1", GatewayIP: "192.0.2.1", GatewayPort: 8091}
	m := &member{name: "c0", info: info}
	_, ok := m.export("ns", "db")
	assert.False(t, ok, "no caches, no export")

	caches := newMemberCaches(func(string, string) {})
	m.caches.Store(caches)
	require.NoError(t, caches.exports.Replace([]interface{}{export, unserved}, "1"))
	require.NoError(t, caches.services.Replace([]interface{}{svc}, "1"))

	got, ok := m.export("ns", "db")
	require.True(t, ok)
	cachedExport, _ := caches.exports.Get("ns", "db")
	cachedService, _ := caches.services.Get("ns", "db")
	assert.Same(t, cachedExport, got.Export, "the cached value itself")
	assert.Same(t, cachedService, got.Service, "the cached value itself")
	assert.Equal(t, info, got.Cluster)
	want := imports.Compute(imports.Namespaces{}, "ns", "db",
		[]imports.Export{{Cluster: info, Export: imports.ExportOf(export), Service: imports.ServiceOf(svc)}})
	assert.True(t, imports.Equal(want, imports.Compute(imports.Namespaces{}, "ns", "db", []imports.Export{got})))

	got, ok = m.export("ns", "lonely")
	require.True(t, ok)
	assert.Nil(t, got.Service, "an export without a Service")
	_, ok = m.export("ns", "other")
	assert.False(t, ok)
}

// heapObjects is the number of Services and of ServiceExports
// BenchmarkStoreHeap caches.
const heapObjects = 10000

// benchObjects returns heapObjects Services and ServiceExports as a client
// decodes them, spread over 100 namespaces.
func benchObjects(b *testing.B) ([]interface{}, []interface{}) {
	svcList := &corev1.ServiceList{}
	expList := &v1alpha1.ServiceExportList{}
	created := metav1.NewTime(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	for i := 0; i < heapObjects; i++ {
		ns, name := fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("service-%05d", i)
		meta := metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(fmt.Sprintf("6f1c2f3e-0c3a-4b8e-9d55-%012d", i)),
			ResourceVersion: fmt.Sprint(100000 + i), Generation: 1, CreationTimestamp: created,
			Labels: map[string]string{"app": name},
		}
		svcList.Items = append(svcList.Items, corev1.Service{
			ObjectMeta: meta,
			Spec: corev1.ServiceSpec{
				Type:       corev1.ServiceTypeClusterIP,
				ClusterIP:  fmt.Sprintf("10.0.%d.%d", i/250, i%250),
				ClusterIPs: []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250)},
				Selector:   map[string]string{"app": name},
				Ports: []corev1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
					{Name: "grpc", Protocol: corev1.ProtocolTCP, Port: 9090, TargetPort: intstr.FromInt32(9090), AppProtocol: ptr.To("grpc")},
				},
				SessionAffinity:       corev1.ServiceAffinityNone,
				IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
				IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			},
		})
		expList.Items = append(expList.Items, v1alpha1.ServiceExport{
			ObjectMeta: meta,
			Spec: v1alpha1.ServiceExportSpec{
				ServiceAccountName: "*",
				Rules:              []v1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/" + name, PathType: "Prefix"}},
				LoadBalancer:       "RoundRobinLoadBalancer",
			},
		})
	}
	svcList = decoded(b, svcList)
	expList = decoded(b, expList)
	// Each object its own allocation, as a Reflector extracts a list.
	services := make([]interface{}, 0, heapObjects)
	for i := range svcList.Items {
		svc := svcList.Items[i]
		services = append(services, &svc)
	}
	exports := make([]interface{}, 0, heapObjects)
	for i := range expList.Items {
		e := expList.Items[i]
		exports = append(exports, &e)
	}
	return services, exports
}

// trimmed returns what a cache that keeps whole objects needs at least of
// obj: a Service's identity, type, ports and affinity; an export without
// its labels, annotations and managed fields.
func trimmed(obj interface{}) interface{} {
	switch o := obj.(type) {
	case *corev1.Service:
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: o.Namespace, Name: o.Name, UID: o.UID,
				ResourceVersion: o.ResourceVersion, CreationTimestamp: o.CreationTimestamp,
			},
			Spec: corev1.ServiceSpec{
				Type: o.Spec.Type, ClusterIP: o.Spec.ClusterIP, ExternalName: o.Spec.ExternalName,
				Ports: o.Spec.Ports, SessionAffinity: o.Spec.SessionAffinity,
				SessionAffinityConfig: o.Spec.SessionAffinityConfig,
			},
		}
	case *v1alpha1.ServiceExport:
		o.ManagedFields, o.Annotations, o.Labels = nil, nil, nil
	}
	return obj
}

// retained returns what fill returns and the bytes of heap it keeps
// reachable; what fill allocated and dropped is not counted.
func retained(fill func() interface{}) (interface{}, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return kept, after.HeapAlloc - before.HeapAlloc
}

// BenchmarkStoreHeap reports the heap the member caches retain per cached
// Service and per cached ServiceExport and, for comparison, what a
// namespace-indexed cache.Indexer retains holding the decoded objects
// trimmed to the fields a whole-object cache must keep.
func BenchmarkStoreHeap(b *testing.B) {
	run := func(b *testing.B, fill func(objs []interface{}) interface{}, pick func(services, exports []interface{}) []interface{}) {
		var total uint64
		for i := 0; i < b.N; i++ {
			kept, bytes := retained(func() interface{} {
				return fill(pick(benchObjects(b)))
			})
			runtime.KeepAlive(kept)
			total += bytes
		}
		b.ReportMetric(float64(total)/float64(b.N)/heapObjects, "B/object")
	}
	pickServices := func(services, _ []interface{}) []interface{} { return services }
	pickExports := func(_, exports []interface{}) []interface{} { return exports }
	slimFill := func(newS func() cache.ReflectorStore) func(objs []interface{}) interface{} {
		return func(objs []interface{}) interface{} {
			s := newS()
			if err := s.Replace(objs, "1"); err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	indexerFill := func(objs []interface{}) interface{} {
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for i := range objs {
			objs[i] = trimmed(objs[i])
		}
		if err := idx.Replace(objs, "1"); err != nil {
			b.Fatal(err)
		}
		return idx
	}
	b.Run("services/store", func(b *testing.B) {
		run(b, slimFill(func() cache.ReflectorStore { return newStore(imports.ServiceOf, (*imports.Service).Equal, nil) }), pickServices)
	})
	b.Run("exports/store", func(b *testing.B) {
		run(b, slimFill(func() cache.ReflectorStore { return newStore(imports.ExportOf, (*imports.ServiceExport).Equal, nil) }), pickExports)
	})
	b.Run("services/indexer", func(b *testing.B) { run(b, indexerFill, pickServices) })
	b.Run("exports/indexer", func(b *testing.B) { run(b, indexerFill, pickExports) })
}
