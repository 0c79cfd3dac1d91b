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

package imports

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// fuzzInput turns the fuzzer's bytes into choices. Past the end of the
// bytes every choice is the first, so any input builds something.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

// pick returns one of n choices.
func (in *fuzzInput) pick(n int) int { return int(in.byte()) % n }

func (in *fuzzInput) bool() bool { return in.byte()&1 == 1 }

// str returns one of choices, or, for the choice past them, up to 32 of
// the input's bytes as they are (any bytes, valid UTF-8 or not).
func (in *fuzzInput) str(choices ...string) string {
	if i := in.pick(len(choices) + 1); i < len(choices) {
		return choices[i]
	}
	n := min(in.pick(33), len(in.b))
	s := string(in.b[:n])
	in.b = in.b[n:]
	return s
}

func (in *fuzzInput) int32(choices ...int32) int32 {
	if i := in.pick(len(choices) + 1); i < len(choices) {
		return choices[i]
	}
	return int32(in.byte())<<8 | int32(in.byte())
}

// fuzzObjects builds up to six clusters' exports of one service, as the
// members' API servers would serve them, and the namespaces that federate
// and the namespace of the service.
func fuzzObjects(data []byte) (Namespaces, string, []object) {
	in := &fuzzInput{b: data}
	var namespaces Namespaces
	if in.bool() {
		namespaces.Allowed = []string{in.str("httpbin", "other")}
	}
	namespace := in.str("httpbin", "kube-system", "other")
	objs := make([]object, in.pick(7))
	for i := range objs {
		// Four clusters, so that some keys repeat.
		c := cluster(1 + in.pick(4))
		c.GatewayHost = in.str(c.GatewayHost, "gw.example.com", "", "::1")
		c.GatewayIP = in.str(c.GatewayIP, "", "2001:db8::1")
		c.GatewayPort = in.int32(80, 0, 65535)
		objs[i].Cluster = c
		if in.pick(8) != 0 {
			objs[i].Export = fuzzExport(in, namespace)
		}
		if in.pick(4) != 0 {
			objs[i].Service = fuzzService(in, namespace)
		}
	}
	return namespaces, namespace, objs
}

func fuzzExport(in *fuzzInput, namespace string) *v1alpha1.ServiceExport {
	e := &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name,
			UID:        types.UID(in.str("uid-1", "uid-2")),
			Generation: int64(in.pick(3)),
			// Few ages, so that ties are common.
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(in.pick(3)) * time.Minute)),
		},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: in.str("", "*", "sa", "other"),
			LoadBalancer:       v1alpha1.ExportLoadBalancer(in.str(string(v1alpha1.RoundRobinLoadBalancer), string(v1alpha1.HashingLoadBalancer), "")),
		},
	}
	for range in.pick(5) {
		e.Spec.Rules = append(e.Spec.Rules, v1alpha1.ServiceExportRule{
			PortNumber: in.int32(8080, 80, 9090, 0, -1, 65536),
			Path:       in.str("/a", "/b", "/a/", "", "a", "//", "/a/../b", "/%2f"),
			PathType:   v1alpha1.PathType(in.str(string(v1alpha1.PathTypePrefix), string(v1alpha1.PathTypeExact), "")),
		})
	}
	if in.pick(4) == 0 {
		e.Spec.PathRewrite = &v1alpha1.PathRewrite{From: in.str("^/a", ""), To: in.str("/", "")}
	}
	for range in.pick(4) {
		e.Spec.TargetClusters = append(e.Spec.TargetClusters, in.str(key(1), key(2), "not a key", ""))
	}
	if in.pick(4) == 0 {
		e.Status.Conditions = []metav1.Condition{{
			Type: in.str(ConditionPathsAvailable, ConditionValid), Status: metav1.ConditionFalse,
			ObservedGeneration: int64(in.pick(3)), Reason: ReasonIngressConflict, Message: in.str("taken", ""),
		}}
	}
	return e
}

func fuzzService(in *fuzzInput, namespace string) *corev1.Service {
	svc := service()
	svc.Namespace = namespace
	svc.Spec.Ports = nil
	svc.Spec.Type = corev1.ServiceType(in.str(string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeExternalName), string(corev1.ServiceTypeNodePort)))
	if in.bool() {
		headless(svc)
	}
	if in.bool() {
		clientIP(svc, in.int32(300, 10800, 0, -1))
		if in.pick(3) == 0 {
			svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = nil
		}
	}
	for range in.pick(5) {
		p := port(in.str("", "http", "grpc"), in.int32(8080, 80, 9090, 0), corev1.Protocol(in.str("TCP", "UDP", "SCTP", "")))
		if in.bool() {
			app := in.str("http", "h2c", "")
			p.AppProtocol = &app
		}
		svc.Spec.Ports = append(svc.Spec.Ports, p)
	}
	return svc
}

// scribble changes, in place, everything reachable from v that may be
// changed: every exported field, every element of a slice, every value of
// a map, every pointee. Whatever shares memory with v sees the change.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[metav1.Time]() {
			if v.CanSet() {
				v.Set(reflect.ValueOf(metav1.NewTime(time.Unix(1, 0))))
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			scribble(e)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(v.String() + "~")
		}
	case reflect.Bool:
		if v.CanSet() {
			v.SetBool(!v.Bool())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.CanSet() {
			v.SetInt(v.Int() ^ 1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.CanSet() {
			v.SetUint(v.Uint() ^ 1)
		}
	}
}

// FuzzCompute checks, for any members' exports of a service, that Compute
// does not panic; that its import does not depend on the order of the
// exports; that it changes none of its inputs; and that the import and
// the inputs share no memory, either way, so that the caller may hand the
// import out while its caches change. Cluster.Addresses, which the import
// may share by contract, is left unset, so Compute makes its own.
func FuzzCompute(f *testing.F) {
	// Seeds: the walkthrough, and inputs that reach conflicts, invalid
	// exports, duplicate keys and namespaces that do not federate.
	for _, seed := range []string{
		"",
		"\x00\x00\x02\x00\x00\x00\x00\x01\x01\x01\x01\x01\x00\x00\x00\x01\x00\x00\x01\x00\x00\x00\x01\x01",
		"\x00\x00\x06\x01\x01\x01\x01\x01\x02\x01\x01\x01\x02\x00\x01\x00\x00\x01\x01\x01\x02\x03\x01\x01\x01\x00\x01",
		"\x01\x01\x01\x05\x00\x03\x03\x03\x07\x00\x00\x00\x04\x05\x06\x07\x02\x03\x04\x04\x04\x01\x01\x01\x02\x02\x02\x02",
		"\x00\x01\x03\x04\x02\x01\x02\x05\x06\x07\x08\x00\x00\x03\x01\x02\x03\x04\x05\x06\x07\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09",
	} {
		f.Add([]byte(seed), int64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, order int64) {
		namespaces, namespace, objs := fuzzObjects(data)
		exports := inputs(objs)
		imp := Compute(namespaces, namespace, name, exports)

		_, _, fresh := fuzzObjects(data)
		if !reflect.DeepEqual(exports, inputs(fresh)) {
			t.Fatalf("Compute changed its inputs")
		}
		if imp == nil {
			for _, e := range exports {
				if e.Export != nil {
					t.Fatalf("no import of %d objects with an export", len(exports))
				}
			}
			return
		}
		checkImport(t, imp, exports)
		want, err := json.Marshal(imp)
		if err != nil {
			t.Fatalf("marshalling the import: %v", err)
		}

		// Any order of the exports gives the same import.
		rnd := rand.New(rand.NewSource(order))
		for range 3 {
			shuffled := inputs(fresh)
			rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			got := Compute(namespaces, namespace, name, shuffled)
			if !reflect.DeepEqual(imp, got) || !Equal(imp, got) {
				gotJSON, _ := json.Marshal(got)
				t.Fatalf("the order of the exports changes the import:\n%s\n%s", want, gotJSON)
			}
		}

		// Changing the inputs afterwards leaves the import as it was...
		before := imp.DeepCopy()
		scribble(reflect.ValueOf(exports))
		if !reflect.DeepEqual(before, imp) {
			t.Fatalf("the import shares memory with its inputs")
		}
		// ...and changing the import leaves the inputs as they were.
		exports = inputs(fresh)
		scribble(reflect.ValueOf(Compute(namespaces, namespace, name, exports)))
		if !reflect.DeepEqual(exports, inputs(fresh)) {
			t.Fatalf("the inputs share memory with the import")
		}
	})
}

// checkImport checks what holds of every import: its name, one status
// entry per exporting cluster, and endpoints of those clusters only.
func checkImport(t *testing.T, imp *flomesh.ServiceImport, exports []Export) {
	t.Helper()
	if imp.Name != name || imp.UID != UID(imp.Namespace, name) {
		t.Fatalf("import %s/%s, UID %s", imp.Namespace, imp.Name, imp.UID)
	}
	keys := map[string]bool{}
	for _, e := range exports {
		if e.Export != nil {
			keys[e.Cluster.Key] = true
		}
	}
	var listed []string
	for _, es := range imp.Status.Exports {
		if !keys[es.Cluster] {
			t.Fatalf("status of cluster %q, which exports nothing", es.Cluster)
		}
		listed = append(listed, es.Cluster)
	}
	slices.Sort(listed)
	if len(slices.Compact(listed)) != len(imp.Status.Exports) {
		t.Fatalf("a cluster listed twice in status.exports: %v", listed)
	}
	for _, p := range imp.Spec.Ports {
		seen := map[string]bool{}
		for _, ep := range p.Endpoints {
			if !keys[ep.ClusterKey] || seen[ep.ClusterKey] {
				t.Fatalf("port %d: endpoint of %q: %s", p.Port, ep.ClusterKey, fmt.Sprint(p.Endpoints))
			}
			seen[ep.ClusterKey] = true
		}
	}
}

// FuzzAvailable checks that Available keeps the exports' order, keeps
// every Ready cluster's, and names as next a time within the grace.
func FuzzAvailable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, int64(30), int64(0))
	f.Add([]byte{255, 0, 10}, int64(0), int64(5))
	f.Add([]byte{}, int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, downFor []byte, graceSeconds, nowOffset int64) {
		now := t0.Add(time.Duration(nowOffset))
		grace := Grace(ptrInt32(graceSeconds), 30*time.Second)
		exports := make([]Export, len(downFor))
		for i, d := range downFor {
			exports[i].Cluster.Key = key(i)
			if d != 0 {
				exports[i].NotReadySince = now.Add(-time.Duration(d-128) * time.Second)
			}
		}
		got, next := Available(exports, grace, now)
		j := 0
		for _, e := range exports {
			kept := j < len(got) && got[j].Cluster.Key == e.Cluster.Key
			if kept {
				j++
			}
			if e.NotReadySince.IsZero() && !kept {
				t.Fatalf("withdrew Ready cluster %s", e.Cluster.Key)
			}
		}
		if j != len(got) {
			t.Fatalf("Available reordered or invented exports")
		}
		if !next.IsZero() && (!next.After(now) || next.After(now.Add(grace))) {
			t.Fatalf("next %v is not within the grace %v after %v", next, grace, now)
		}
	})
}

// ptrInt32 is seconds as a policy's field, clamped to int32 as a decoder
// would refuse anything wider.
func ptrInt32(seconds int64) *int32 {
	s := int32(max(min(seconds, 1<<31-1), -1<<31))
	return &s
}
