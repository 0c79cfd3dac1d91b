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
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/install"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

const (
	ns   = "httpbin"
	name = "httpbin"
)

// t0 is the creation time of the oldest export in the tests; exports made
// with age n were created n minutes later.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func key(n int) string { return fmt.Sprintf("default/default/default/cluster-%d", n) }

// cluster is member cluster-n of the walkthrough: one gateway host, port 80+n.
func cluster(n int) Cluster {
	return Cluster{
		Name:        fmt.Sprintf("cluster-%d", n),
		Key:         key(n),
		GatewayHost: "192.168.1.110",
		GatewayIP:   "192.168.1.110",
		GatewayPort: int32(80 + n),
	}
}

func rule(port int32, path string) v1alpha1.ServiceExportRule {
	return v1alpha1.ServiceExportRule{PortNumber: port, Path: path, PathType: v1alpha1.PathTypePrefix}
}

// export is a defaulted ServiceExport of httpbin/httpbin created age
// minutes after t0.
func export(age int, sa string, rules ...v1alpha1.ServiceExportRule) *v1alpha1.ServiceExport {
	return &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			UID:               types.UID(fmt.Sprintf("uid-%d", age)),
			Generation:        int64(age + 1),
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute)),
		},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: sa,
			Rules:              rules,
			LoadBalancer:       v1alpha1.RoundRobinLoadBalancer,
		},
	}
}

// service is httpbin.yaml's Service as an API server returns it, defaults
// set, with the given ports (8080/TCP when none).
func service(ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{tcp("", 8080)}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       "10.96.0.10",
			ClusterIPs:      []string{"10.96.0.10"},
			Ports:           ports,
			Selector:        map[string]string{"app": "pipy"},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
}

func port(name string, number int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, Protocol: proto, TargetPort: intstr.FromInt32(number)}
}

func tcp(name string, number int32) corev1.ServicePort { return port(name, number, corev1.ProtocolTCP) }

func headless(s *corev1.Service) *corev1.Service {
	s.Spec.ClusterIP, s.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	return s
}

func clientIP(s *corev1.Service, timeout int32) *corev1.Service {
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(timeout)}}
	return s
}

func endpoint(n int, path string) flomesh.Endpoint {
	c := cluster(n)
	return flomesh.Endpoint{ClusterKey: c.Key, Target: flomesh.Target{Host: c.GatewayHost, IP: c.GatewayIP, Port: c.GatewayPort, Path: path}}
}

func path(n int) string { return fmt.Sprintf("/cluster-%d/httpbin-mesh", n) }

// object is a cluster's export as the cluster's API server serves it: the
// ServiceExport, and the Service of the same name (nil when there is none).
type object struct {
	Cluster Cluster
	Export  *v1alpha1.ServiceExport
	Service *corev1.Service
}

// inputs returns what Compute reads of objs, taken as a cache takes it.
func inputs(objs []object) []Export {
	exports := make([]Export, len(objs))
	for i, o := range objs {
		exports[i].Cluster = o.Cluster
		if o.Export != nil {
			exports[i].Export = ExportOf(o.Export)
		}
		if o.Service != nil {
			exports[i].Service = ServiceOf(o.Service)
		}
	}
	return exports
}

// compute is Compute of the exports objs hold.
func compute(namespaces Namespaces, objs []object) *flomesh.ServiceImport {
	return Compute(namespaces, ns, name, inputs(objs))
}

// walkthroughObjects returns the exports of the walkthrough: httpbin
// exported by cluster-1 and then cluster-3.
func walkthroughObjects() []object {
	return []object{
		{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: service()},
		{Cluster: cluster(3), Export: export(1, "*", rule(8080, path(3))), Service: service()},
	}
}

// walkthrough returns Compute's inputs of walkthroughObjects.
func walkthrough() []Export { return inputs(walkthroughObjects()) }

func newScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return scheme
}

// kubectlJSON renders v as `kubectl get -o jsonpath='{.spec}'` does: keys
// sorted, two-space indent, with a trailing newline as in the seed file.
func kubectlJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	var generic any
	require.NoError(t, json.Unmarshal(raw, &generic))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(generic))
	return buf.Bytes()
}

// TestSeed checks that the walkthrough yields exactly the ServiceImport spec
// the walkthrough shows, once served as v1alpha1.
func TestSeed(t *testing.T) {
	imp := Compute(Namespaces{}, ns, name, walkthrough())
	require.NotNil(t, imp)

	var out v1alpha1.ServiceImport
	require.NoError(t, newScheme(t).Convert(imp, &out, nil))

	want, err := os.ReadFile("testdata/serviceimport-httpbin.json")
	require.NoError(t, err)
	assert.Equal(t, string(want), string(kubectlJSON(t, out.Spec)))

	assert.Equal(t, ns, imp.Namespace)
	assert.Equal(t, name, imp.Name)
	assert.Equal(t, types.UID("98c5b199-0a52-5ce6-8d3b-3a7fdc5c6102"), imp.UID, "the UUIDv5 of the import's name in the URL name space")
	assert.Equal(t, metav1.NewTime(t0), imp.CreationTimestamp, "the oldest export's creation time")
	assert.Empty(t, imp.ResourceVersion)
	assert.Empty(t, imp.Labels)
	assert.Equal(t, []flomesh.SourceStatus{
		{Cluster: key(1), Addresses: []string{"192.168.1.110:81"}},
		{Cluster: key(3), Addresses: []string{"192.168.1.110:83"}},
	}, imp.Status.Clusters)
	for _, es := range imp.Status.Exports {
		assertCondition(t, imp, es.Cluster, ConditionValid, metav1.ConditionTrue, ReasonValid)
		assertCondition(t, imp, es.Cluster, ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts)
	}
}

func TestNoExports(t *testing.T) {
	assert.Nil(t, compute(Namespaces{}, nil))
	assert.Nil(t, compute(Namespaces{}, []object{}))
	assert.Nil(t, compute(Namespaces{}, []object{{Cluster: cluster(1), Service: service()}}), "an entry without an export is no export")
}

// want is the expected state of one export in the import's status.
type want struct {
	valid    string // reason of Valid; Valid is True only for ReasonValid
	conflict string // reason of Conflict; Conflict is False only for ReasonNoConflicts
}

func TestCompute(t *testing.T) {
	ok := want{valid: ReasonValid, conflict: ReasonNoConflicts}

	tests := []struct {
		name    string
		exports []object
		// wantSpec is the whole expected spec.
		wantSpec flomesh.ServiceImportSpec
		// wantExports is the expected state of each export, by cluster key.
		wantExports map[string]want
		// wantMessages must each occur in the Conflict message of every
		// valid export, or in the Valid message of each invalid one.
		wantMessages []string
	}{
		{
			name:    "single cluster",
			exports: []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: service()}},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1))}},
				},
			},
			wantExports: map[string]want{key(1): ok},
		},
		{
			name: "a rule's port is missing: the export is invalid and serves nothing",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1)), rule(9090, "/metrics")), Service: service()},
			},
			wantSpec:     flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports:  map[string]want{key(1): {valid: ReasonPortNotFound, conflict: ReasonNoConflicts}},
			wantMessages: []string{"rule 1: port 9090"},
		},
		{
			name: "an invalid export does not stop a valid one",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(9090, path(1))), Service: service()},
				{Cluster: cluster(2), Export: export(1, "*", rule(8080, path(2))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(2, path(2))}},
				},
			},
			wantExports: map[string]want{key(1): {valid: ReasonPortNotFound, conflict: ReasonNoConflicts}, key(2): ok},
		},
		{
			name:         "Service missing",
			exports:      []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1)))}},
			wantSpec:     flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports:  map[string]want{key(1): {valid: ReasonServiceNotFound, conflict: ReasonNoConflicts}},
			wantMessages: []string{"httpbin/httpbin"},
		},
		{
			name: "ExternalName Service",
			exports: []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: func() *corev1.Service {
				s := service()
				s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "httpbin.example.com", Ports: s.Spec.Ports}
				return s
			}()}},
			wantSpec:    flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports: map[string]want{key(1): {valid: ReasonExternalNameService, conflict: ReasonNoConflicts}},
		},
		{
			name:        "no rules",
			exports:     []object{{Cluster: cluster(1), Export: export(0, "*"), Service: service()}},
			wantSpec:    flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports: map[string]want{key(1): {valid: ReasonNoRules, conflict: ReasonNoConflicts}},
		},
		{
			name: "one port at two paths",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, "/a"), rule(8080, "/b")), Service: service()},
			},
			wantSpec:     flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports:  map[string]want{key(1): {valid: ReasonInvalidExport, conflict: ReasonNoConflicts}},
			wantMessages: []string{"spec.rules[1].path: Invalid value: port 8080 is exposed at another path by rules[0]"},
		},
		{
			name: "a rule without a path is invalid: the gateway would serve it at every path",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, "")), Service: service()},
			},
			wantSpec:     flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports:  map[string]want{key(1): {valid: ReasonInvalidExport, conflict: ReasonNoConflicts}},
			wantMessages: []string{"spec.rules[0].path: Required value"},
		},
		{
			name: "a relative path is invalid",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, "cluster-1/httpbin-mesh")), Service: service()},
			},
			wantSpec:     flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports:  map[string]want{key(1): {valid: ReasonInvalidExport, conflict: ReasonNoConflicts}},
			wantMessages: []string{`spec.rules[0].path: Invalid value: must be an absolute path (start with "/")`},
		},
		{
			// ExportOf keeps every field validation reads, so an export is
			// judged alike wherever it was converted.
			name: "a field no rule of the merge reads is validated all the same",
			exports: []object{{Cluster: cluster(1), Export: func() *v1alpha1.ServiceExport {
				e := export(0, "*", v1alpha1.ServiceExportRule{PortNumber: 8080, Path: path(1), PathType: "Regex"})
				e.Spec.LoadBalancer = "Random"
				e.Spec.PathRewrite = &v1alpha1.PathRewrite{To: "/"}
				return e
			}(), Service: service()}},
			wantSpec:    flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports: map[string]want{key(1): {valid: ReasonInvalidExport, conflict: ReasonNoConflicts}},
			wantMessages: []string{`spec.rules[0].pathType: Unsupported value`, `spec.loadBalancer: Unsupported value`,
				`spec.pathRewrite.from: Required value`},
		},
		{
			name: "an invalid export is refused before its Service is looked at",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, "")), Service: nil},
			},
			wantSpec:    flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{}},
			wantExports: map[string]want{key(1): {valid: ReasonInvalidExport, conflict: ReasonNoConflicts}},
		},
		{
			name: "one port twice at the same path is redundant, not invalid",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1)), rule(8080, path(1))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1))}}},
			},
			wantExports: map[string]want{key(1): ok},
		},
		{
			name:    "headless Service",
			exports: []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: headless(service())}},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.Headless,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1))}}},
			},
			wantExports: map[string]want{key(1): ok},
		},
		{
			name:    "ClientIP session affinity is carried",
			exports: []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: clientIP(service(), 300)}},
			wantSpec: flomesh.ServiceImportSpec{
				Type:                  flomesh.ClusterSetIP,
				ServiceAccountName:    "*",
				SessionAffinity:       "ClientIP",
				SessionAffinityConfig: &flomesh.SessionAffinityConfig{ClientIP: &flomesh.ClientIPConfig{TimeoutSeconds: ptr.To[int32](300)}},
				Ports:                 []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1))}}},
			},
			wantExports: map[string]want{key(1): ok},
		},
		{
			name: "endpoints sorted by key regardless of input or age order",
			exports: []object{
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: service()},
				{Cluster: cluster(1), Export: export(2, "*", rule(8080, path(1))), Service: service()},
				{Cluster: cluster(2), Export: export(1, "*", rule(8080, path(2))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(2, path(2)), endpoint(3, path(3))}},
				},
			},
			wantExports: map[string]want{key(1): ok, key(2): ok, key(3): ok},
		},
		{
			name: "multiple rules on multiple ports, ports sorted by number then protocol",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "*", rule(9090, "/c1/metrics"), rule(53, "/c1/dns"), rule(8080, "/c1/web")),
					Service: service(tcp("web", 8080), tcp("metrics", 9090), port("dns", 53, corev1.ProtocolUDP), port("dns-tcp", 53, corev1.ProtocolTCP))},
				{Cluster: cluster(2), Export: export(1, "*", rule(8080, "/c2/web")),
					Service: service(tcp("web", 8080), tcp("metrics", 9090))},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Name: "dns-tcp", Port: 53, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, "/c1/dns")}},
					{Name: "dns", Port: 53, Protocol: "UDP", Endpoints: []flomesh.Endpoint{endpoint(1, "/c1/dns")}},
					{Name: "web", Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, "/c1/web"), endpoint(2, "/c2/web")}},
					{Name: "metrics", Port: 9090, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, "/c1/metrics")}},
				},
			},
			// A port only some clusters export is a union, not a conflict.
			wantExports: map[string]want{key(1): ok, key(2): ok},
		},
		{
			name: "appProtocol is carried",
			exports: []object{{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: func() *corev1.Service {
				p := tcp("http", 8080)
				p.AppProtocol = ptr.To("kubernetes.io/h2c")
				return service(p)
			}()}},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Name: "http", Port: 8080, Protocol: "TCP", AppProtocol: ptr.To("kubernetes.io/h2c"), Endpoints: []flomesh.Endpoint{endpoint(1, path(1))}},
				},
			},
			wantExports: map[string]want{key(1): ok},
		},
		{
			name: "member without gateway IP",
			exports: []object{{Cluster: func() Cluster {
				c := cluster(1)
				c.GatewayHost, c.GatewayIP = "gw.cluster-1.example", ""
				return c
			}(), Export: export(0, "*", rule(8080, path(1))), Service: service()}},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{
					{ClusterKey: key(1), Target: flomesh.Target{Host: "gw.cluster-1.example", IP: "", Port: 81, Path: path(1)}},
				}}},
			},
			wantExports: map[string]want{key(1): ok},
		},

		// Conflicts (KEP-1645): the oldest valid export wins. In each case
		// the oldest export is cluster-3's, so that winning by age is not
		// mistaken for winning by key order.
		{
			name: "conflict: protocol of a port",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1))), Service: service(port("", 8080, corev1.ProtocolUDP))},
				{Cluster: cluster(2), Export: export(2, "*", rule(8080, path(2))), Service: service()},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				// cluster-1 defines 8080 otherwise and serves no endpoint for it.
				Ports: []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(2, path(2)), endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonPortConflict}, key(2): {ReasonValid, ReasonPortConflict}, key(3): {ReasonValid, ReasonPortConflict}},
			wantMessages: []string{"port 8080", "8080/TCP of the oldest export (" + key(3) + ")", "8080/UDP (" + key(1) + ")"},
		},
		{
			name: "conflict: name of a port; other ports still merge",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1)), rule(9090, "/c1/metrics")), Service: service(tcp("web", 8080), tcp("metrics", 9090))},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3)), rule(9090, "/c3/metrics")), Service: service(tcp("http", 8080), tcp("metrics", 9090))},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports: []flomesh.ServicePort{
					{Name: "http", Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(3, path(3))}},
					{Name: "metrics", Port: 9090, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, "/c1/metrics"), endpoint(3, "/c3/metrics")}},
				},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonPortConflict}, key(3): {ReasonValid, ReasonPortConflict}},
			wantMessages: []string{"8080/TCP name=http of the oldest export (" + key(3) + ") over 8080/TCP name=web (" + key(1) + ")"},
		},
		{
			name: "conflict: headless and not",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1))), Service: service()},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: headless(service())},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.Headless,
				ServiceAccountName: "*",
				// The type changes no port, so both clusters serve.
				Ports: []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonTypeConflict}, key(3): {ReasonValid, ReasonTypeConflict}},
			wantMessages: []string{"type conflicts: using Headless of the oldest export (" + key(3) + ") over ClusterSetIP (" + key(1) + ")"},
		},
		{
			name: "conflict: serviceAccountName",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1))), Service: service()},
				{Cluster: cluster(3), Export: export(0, "sleep", rule(8080, path(3))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "sleep",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonServiceAccountNameConflict}, key(3): {ReasonValid, ReasonServiceAccountNameConflict}},
			wantMessages: []string{`serviceAccountName conflicts: using "sleep" of the oldest export (` + key(3) + `) over "*" (` + key(1) + `)`},
		},
		{
			name: "conflict: session affinity",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1))), Service: clientIP(service(), 300)},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonSessionAffinityConflict}, key(3): {ReasonValid, ReasonSessionAffinityConflict}},
			wantMessages: []string{"sessionAffinity conflicts: using None of the oldest export (" + key(3) + ") over ClientIP (" + key(1) + ")"},
		},
		{
			name: "conflict: session affinity timeout",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "*", rule(8080, path(1))), Service: clientIP(service(), 300)},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: clientIP(service(), 10800)},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:                  flomesh.ClusterSetIP,
				ServiceAccountName:    "*",
				SessionAffinity:       "ClientIP",
				SessionAffinityConfig: &flomesh.SessionAffinityConfig{ClientIP: &flomesh.ClientIPConfig{TimeoutSeconds: ptr.To[int32](10800)}},
				Ports:                 []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonSessionAffinityConfigConflict}, key(3): {ReasonValid, ReasonSessionAffinityConfigConflict}},
			wantMessages: []string{"timeoutSeconds=10800 of the oldest export (" + key(3) + ")"},
		},
		{
			name: "conflict: several properties; the reason is the first, the message lists all",
			exports: []object{
				{Cluster: cluster(1), Export: export(1, "other", rule(8080, path(1))), Service: headless(service(port("", 8080, corev1.ProtocolUDP)))},
				{Cluster: cluster(3), Export: export(0, "*", rule(8080, path(3))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(3, path(3))}}},
			},
			wantExports:  map[string]want{key(1): {ReasonValid, ReasonPortConflict}, key(3): {ReasonValid, ReasonPortConflict}},
			wantMessages: []string{"port 8080 conflicts", "type conflicts", "serviceAccountName conflicts"},
		},
		{
			name: "conflict: ties in creation time are broken by cluster key",
			exports: []object{
				{Cluster: cluster(2), Export: export(0, "late", rule(8080, path(2))), Service: service()},
				{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(1, path(1)), endpoint(2, path(2))}}},
			},
			wantExports: map[string]want{key(1): {ReasonValid, ReasonServiceAccountNameConflict}, key(2): {ReasonValid, ReasonServiceAccountNameConflict}},
		},
		{
			name: "conflict: an invalid export is no party to it, even when oldest",
			exports: []object{
				{Cluster: cluster(1), Export: export(0, "old"), Service: service()},
				{Cluster: cluster(2), Export: export(1, "*", rule(8080, path(2))), Service: service()},
				{Cluster: cluster(3), Export: export(2, "*", rule(8080, path(3))), Service: service()},
			},
			wantSpec: flomesh.ServiceImportSpec{
				Type:               flomesh.ClusterSetIP,
				ServiceAccountName: "*",
				Ports:              []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(2, path(2)), endpoint(3, path(3))}}},
			},
			wantExports: map[string]want{key(1): {ReasonNoRules, ReasonNoConflicts}, key(2): ok, key(3): ok},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			imp := compute(Namespaces{}, tc.exports)
			require.NotNil(t, imp)
			assert.Equal(t, tc.wantSpec, imp.Spec)
			assertStatus(t, imp, tc.exports, tc.wantExports, tc.wantMessages)
		})
	}
}

// assertStatus checks the import's status against the expected state of
// each export, and the properties every status must have.
func assertStatus(t *testing.T, imp *flomesh.ServiceImport, exports []object, wants map[string]want, messages []string) {
	t.Helper()
	var keys, validKeys []string
	for k, w := range wants {
		keys = append(keys, k)
		if w.valid == ReasonValid {
			validKeys = append(validKeys, k)
		}
	}
	slices.Sort(keys)
	slices.Sort(validKeys)

	var gotKeys, gotClusters []string
	for _, es := range imp.Status.Exports {
		gotKeys = append(gotKeys, es.Cluster)
	}
	for _, c := range imp.Status.Clusters {
		gotClusters = append(gotClusters, c.Cluster)
	}
	assert.Equal(t, keys, gotKeys, "one status per export, sorted by key")
	assert.Equal(t, validKeys, gotClusters, "clusters are those of valid exports, sorted by key")

	for _, e := range exports {
		k := e.Cluster.Key
		w := wants[k]
		validStatus := metav1.ConditionFalse
		if w.valid == ReasonValid {
			validStatus = metav1.ConditionTrue
		}
		conflictStatus := metav1.ConditionTrue
		if w.conflict == ReasonNoConflicts {
			conflictStatus = metav1.ConditionFalse
		}
		es := exportStatus(imp, k)
		require.NotNil(t, es, k)
		assert.Equal(t, e.Export.Generation, es.ObservedGeneration, k)
		if w == (want{valid: ReasonValid, conflict: ReasonNoConflicts}) {
			assert.Empty(t, es.Conditions, "%s: a healthy export lists no conditions", k)
		} else {
			assert.Len(t, es.Conditions, 2, "%s: an export that is not healthy lists both conditions", k)
		}
		conds := ExportConditions(imp, k, e.Export.CreationTimestamp)
		require.Len(t, conds, 2, k)
		assert.Equal(t, ConditionValid, conds[0].Type)
		assert.Equal(t, ConditionConflict, conds[1].Type)
		for _, c := range conds {
			assert.Equal(t, e.Export.CreationTimestamp, c.LastTransitionTime, "%s %s: transition time is the export's creation", k, c.Type)
			assert.Equal(t, e.Export.Generation, c.ObservedGeneration, "%s %s", k, c.Type)
			assert.NotEmpty(t, c.Message, "%s %s", k, c.Type)
		}
		assertCondition(t, imp, k, ConditionValid, validStatus, w.valid)
		assertCondition(t, imp, k, ConditionConflict, conflictStatus, w.conflict)
		for _, m := range messages {
			if w.valid == ReasonValid {
				assert.Contains(t, conds[1].Message, m, k)
			} else {
				assert.Contains(t, conds[0].Message, m, k)
			}
		}
	}
}

func assertCondition(t *testing.T, imp *flomesh.ServiceImport, clusterKey, condType string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := findCondition(ExportConditions(imp, clusterKey, metav1.Time{}), condType)
	if !assert.NotNil(t, c, "%s: no %s condition", clusterKey, condType) {
		return
	}
	assert.Equal(t, status, c.Status, "%s %s status (%s)", clusterKey, condType, c.Message)
	assert.Equal(t, reason, c.Reason, "%s %s reason (%s)", clusterKey, condType, c.Message)
}

func exportStatus(imp *flomesh.ServiceImport, clusterKey string) *flomesh.ExportStatus {
	for i := range imp.Status.Exports {
		if imp.Status.Exports[i].Cluster == clusterKey {
			return &imp.Status.Exports[i]
		}
	}
	return nil
}

func findCondition(conds []metav1.Condition, condType string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == condType {
			return &conds[i]
		}
	}
	return nil
}

// TestConflictClears checks that the Conflict mark goes away from every
// export once the exports agree again, and that the import then serves the
// cluster that conflicted.
func TestConflictClears(t *testing.T) {
	exports := []object{
		{Cluster: cluster(1), Export: export(0, "*", rule(8080, path(1))), Service: service()},
		{Cluster: cluster(2), Export: export(1, "*", rule(8080, path(2))), Service: service(port("", 8080, corev1.ProtocolUDP))},
	}
	imp := compute(Namespaces{}, exports)
	for _, k := range []string{key(1), key(2)} {
		assertCondition(t, imp, k, ConditionConflict, metav1.ConditionTrue, ReasonPortConflict)
	}
	assert.Equal(t, []flomesh.Endpoint{endpoint(1, path(1))}, imp.Spec.Ports[0].Endpoints)

	// The owner of cluster-2 fixes the Service.
	exports[1].Service = service()
	fixed := compute(Namespaces{}, exports)
	for _, k := range []string{key(1), key(2)} {
		assertCondition(t, fixed, k, ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts)
	}
	assert.Equal(t, []flomesh.Endpoint{endpoint(1, path(1)), endpoint(2, path(2))}, fixed.Spec.Ports[0].Endpoints)
	assert.False(t, Equal(imp, fixed))

	// The conflict also ends when the conflicting export goes away.
	exports[1].Service = service(port("", 8080, corev1.ProtocolUDP))
	alone := compute(Namespaces{}, exports[:1])
	assertCondition(t, alone, key(1), ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts)
}

// TestIngressConflict checks that an export the syncer reported it could
// not expose serves no endpoint and carries the report, and that a report
// of an earlier generation of the export is ignored.
func TestIngressConflict(t *testing.T) {
	const msg = "path /cluster-1/httpbin-mesh is already used by Ingress default/mine"
	reported := func(observed int64) []object {
		exports := walkthroughObjects()
		e := exports[0].Export
		e.Status.Conditions = []metav1.Condition{{Type: ConditionPathsAvailable, Status: metav1.ConditionFalse,
			Reason: ReasonIngressConflict, Message: msg, ObservedGeneration: observed}}
		return exports
	}
	current := reported(1)
	imp := compute(Namespaces{}, current)
	assertCondition(t, imp, key(1), ConditionValid, metav1.ConditionFalse, ReasonIngressConflict)
	assert.Equal(t, msg, findCondition(ExportConditions(imp, key(1), metav1.Time{}), ConditionValid).Message)
	assertCondition(t, imp, key(3), ConditionValid, metav1.ConditionTrue, ReasonValid)
	require.Len(t, imp.Spec.Ports, 1)
	assert.Equal(t, []flomesh.Endpoint{endpoint(3, path(3))}, imp.Spec.Ports[0].Endpoints, "nothing serves cluster-1's path")

	stale := reported(0)
	imp = compute(Namespaces{}, stale)
	assertCondition(t, imp, key(1), ConditionValid, metav1.ConditionTrue, ReasonValid)
	assert.Equal(t, []flomesh.Endpoint{endpoint(1, path(1)), endpoint(3, path(3))}, imp.Spec.Ports[0].Endpoints)

	// The member writes the status: a huge message is cut.
	huge := reported(1)
	huge[0].Export.Status.Conditions[0].Message = strings.Repeat("x", 32768)
	imp = compute(Namespaces{}, huge)
	got := findCondition(ExportConditions(imp, key(1), metav1.Time{}), ConditionValid).Message
	assert.LessOrEqual(t, len(got), maxMessageLength)
	assert.True(t, strings.HasSuffix(got, "..."), "the cut is marked")
}

// TestDuplicateClusterKey checks that a cluster listed twice yields one
// status entry, from its older export.
func TestDuplicateClusterKey(t *testing.T) {
	imp := compute(Namespaces{}, []object{
		{Cluster: cluster(1), Export: export(1, "new", rule(8080, "/new")), Service: service()},
		{Cluster: cluster(1), Export: export(0, "old", rule(8080, "/old")), Service: service()},
	})
	require.Len(t, imp.Status.Exports, 1)
	assert.Equal(t, "old", imp.Spec.ServiceAccountName)
	assert.Equal(t, []flomesh.Endpoint{endpoint(1, "/old")}, imp.Spec.Ports[0].Endpoints)
}

// TestDeterministic checks that the order of the exports does not matter:
// every replica, whatever order its caches list in, serves the same bytes.
func TestDeterministic(t *testing.T) {
	exports := benchmarkExports(8)
	// Make it interesting: a conflict, an invalid export, a tie in age.
	exports[5].Service = service(port("", 8080, corev1.ProtocolUDP))
	exports[6].Service = nil
	exports[7].Export.CreationTimestamp = exports[2].Export.CreationTimestamp

	want := compute(Namespaces{}, exports)
	wantJSON, err := json.Marshal(want)
	require.NoError(t, err)

	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 50; i++ {
		shuffled := slices.Clone(exports)
		rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := compute(Namespaces{}, shuffled)
		require.True(t, reflect.DeepEqual(want, got), "order %d differs", i)
		gotJSON, err := json.Marshal(got)
		require.NoError(t, err)
		require.Equal(t, string(wantJSON), string(gotJSON))
		require.True(t, Equal(want, got))
	}
}

// TestComputeDoesNotAlias checks that the import shares no memory with its
// inputs, so the caller may hand it out while the caches change.
func TestComputeDoesNotAlias(t *testing.T) {
	objs := walkthroughObjects()
	objs[0].Service, objs[1].Service = clientIP(service(tcp("http", 8080)), 300), clientIP(service(tcp("http", 8080)), 300)
	objs[0].Service.Spec.Ports[0].AppProtocol = ptr.To("http")
	objs[0].Export.Spec.TargetClusters = []string{key(2)}
	exports := inputs(objs)
	imp := Compute(Namespaces{}, ns, name, exports)
	before := imp.DeepCopy()

	exports[0].Service.ClientIPTimeoutSeconds = 1
	exports[0].Service.Ports[0] = ServicePort{Name: "changed", Protocol: corev1.ProtocolUDP, AppProtocol: "changed", Port: 1}
	exports[0].Export.TargetClusters[0] = key(4)
	exports[0].Export.Rules[0].Path = "/changed"
	exports[0].Export.CreationTimestamp = metav1.NewTime(t0.Add(time.Hour))
	exports[0].Export.Generation = 42
	assert.True(t, Equal(before, imp))
}

// TestExportOf checks that ExportOf keeps what Compute and validation read
// of a ServiceExport as a client decodes it, with the API's constants for
// enumerations rather than decoded copies of them.
func TestExportOf(t *testing.T) {
	obj := export(2, "client", rule(8080, "/a"), v1alpha1.ServiceExportRule{PortNumber: 9090, Path: "/b", PathType: v1alpha1.PathTypeExact})
	obj.ResourceVersion = "7"
	obj.Labels = map[string]string{"app": "httpbin"}
	obj.Spec.SessionSticky = true
	obj.Spec.PathRewrite = &v1alpha1.PathRewrite{From: "/a", To: "/"}
	obj.Spec.TargetClusters = []string{key(2)}
	obj.Status.Conditions = []metav1.Condition{{Type: ConditionPathsAvailable, Status: metav1.ConditionFalse,
		Reason: ReasonIngressConflict, Message: "taken", ObservedGeneration: obj.Generation}}
	obj = decoded(t, obj)

	got := ExportOf(obj)
	assert.Equal(t, &ServiceExport{
		UID:                "uid-2",
		CreationTimestamp:  obj.CreationTimestamp,
		Generation:         3,
		ServiceAccountName: "client",
		Rules: []ExportRule{{PortNumber: 8080, Path: "/a", PathType: flomesh.PathTypePrefix},
			{PortNumber: 9090, Path: "/b", PathType: flomesh.PathTypeExact}},
		LoadBalancer:    flomesh.RoundRobinLoadBalancer,
		PathRewrite:     &flomesh.PathRewrite{From: "/a", To: "/"},
		TargetClusters:  []string{key(2)},
		IngressConflict: ptr.To("taken"),
	}, got)
	assert.True(t, got.CreationTimestamp.Equal(&metav1.Time{Time: t0.Add(2 * time.Minute)}))
	assert.Same(t, unsafe.StringData(string(flomesh.PathTypePrefix)), unsafe.StringData(string(got.Rules[0].PathType)))
	assert.Same(t, unsafe.StringData(string(flomesh.RoundRobinLoadBalancer)), unsafe.StringData(string(got.LoadBalancer)))

	// A report of an earlier generation is no report.
	obj.Generation++
	assert.Nil(t, ExportOf(obj).IngressConflict)

	// Equal sees every field.
	for name, change := range map[string]func(e *ServiceExport){
		"uid":              func(e *ServiceExport) { e.UID = "other" },
		"created":          func(e *ServiceExport) { e.CreationTimestamp = metav1.NewTime(t0) },
		"generation":       func(e *ServiceExport) { e.Generation++ },
		"account":          func(e *ServiceExport) { e.ServiceAccountName = "other" },
		"rule":             func(e *ServiceExport) { e.Rules[1].PathType = flomesh.PathTypePrefix },
		"rules":            func(e *ServiceExport) { e.Rules = e.Rules[:1] },
		"load balancer":    func(e *ServiceExport) { e.LoadBalancer = flomesh.HashingLoadBalancer },
		"path rewrite":     func(e *ServiceExport) { e.PathRewrite.To = "/b" },
		"no path rewrite":  func(e *ServiceExport) { e.PathRewrite = nil },
		"target clusters":  func(e *ServiceExport) { e.TargetClusters = nil },
		"ingress conflict": func(e *ServiceExport) { *e.IngressConflict = "other" },
		"no conflict":      func(e *ServiceExport) { e.IngressConflict = nil },
	} {
		a, b := ExportOf(obj), ExportOf(obj)
		b.IngressConflict = ptr.To("taken")
		a.IngressConflict = ptr.To("taken")
		require.True(t, a.Equal(b), name)
		change(b)
		assert.False(t, a.Equal(b), name)
		assert.False(t, b.Equal(a), name)
	}
}

// TestServiceOf checks that ServiceOf keeps what Compute reads of a
// Service as a client decodes it, with the API's constants for
// enumerations rather than decoded copies of them.
func TestServiceOf(t *testing.T) {
	obj := clientIP(headless(service(tcp("http", 8080), port("dns", 53, corev1.ProtocolUDP))), 600)
	obj.Spec.Ports[0].AppProtocol = ptr.To("http")
	obj.Spec.Ports[0].NodePort = 30080
	obj.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	obj = decoded(t, obj)

	got := ServiceOf(obj)
	assert.Equal(t, &Service{
		Type:                   corev1.ServiceTypeClusterIP,
		SessionAffinity:        corev1.ServiceAffinityClientIP,
		Ports:                  []ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, AppProtocol: "http", Port: 8080}, {Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}},
		ClientIPTimeoutSeconds: 600,
		Headless:               true,
		HasClientIP:            true,
		HasClientIPTimeout:     true,
	}, got)
	assert.Same(t, unsafe.StringData(string(corev1.ServiceTypeClusterIP)), unsafe.StringData(string(got.Type)))
	assert.Same(t, unsafe.StringData(string(corev1.ProtocolUDP)), unsafe.StringData(string(got.Ports[1].Protocol)))

	// Equal sees every field.
	for name, change := range map[string]func(s *Service){
		"type":        func(s *Service) { s.Type = corev1.ServiceTypeNodePort },
		"affinity":    func(s *Service) { s.SessionAffinity = corev1.ServiceAffinityNone },
		"port":        func(s *Service) { s.Ports[0].AppProtocol = "" },
		"ports":       func(s *Service) { s.Ports = s.Ports[:1] },
		"timeout":     func(s *Service) { s.ClientIPTimeoutSeconds = 1 },
		"headless":    func(s *Service) { s.Headless = false },
		"clientIP":    func(s *Service) { s.HasClientIP = false },
		"has timeout": func(s *Service) { s.HasClientIPTimeout = false },
	} {
		a, b := ServiceOf(obj), ServiceOf(obj)
		require.True(t, a.Equal(b), name)
		change(b)
		assert.False(t, a.Equal(b), name)
		assert.False(t, b.Equal(a), name)
	}

	obj.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = nil
	noTimeout := ServiceOf(obj)
	assert.True(t, noTimeout.HasClientIP)
	assert.False(t, noTimeout.HasClientIPTimeout)
}

// decoded returns obj as a client decodes it from the API: times in the
// local time zone, every string its own.
func decoded[T any](t testing.TB, obj *T) *T {
	t.Helper()
	raw, err := json.Marshal(obj)
	require.NoError(t, err)
	out := new(T)
	require.NoError(t, json.Unmarshal(raw, out))
	return out
}

// TestInputsDoNotAlias checks that ExportOf and ServiceOf share nothing
// but strings with the objects, so that a cache may keep their values
// while the objects are dropped or reused.
func TestInputsDoNotAlias(t *testing.T) {
	obj := export(0, "*", rule(8080, path(1)))
	obj.Spec.TargetClusters = []string{key(2)}
	obj.Spec.PathRewrite = &v1alpha1.PathRewrite{From: "/a", To: "/b"}
	e := ExportOf(obj)
	svcObj := clientIP(service(tcp("http", 8080)), 300)
	svcObj.Spec.Ports[0].AppProtocol = ptr.To("http")
	svc := ServiceOf(svcObj)
	wantExport, wantService := *e, *svc
	wantExport.Rules, wantExport.TargetClusters = slices.Clone(e.Rules), slices.Clone(e.TargetClusters)
	wantExport.PathRewrite = ptr.To(*e.PathRewrite)
	wantService.Ports = slices.Clone(svc.Ports)

	obj.Spec.TargetClusters[0] = key(4)
	obj.Spec.Rules[0] = rule(1, "/changed")
	obj.Spec.PathRewrite.From = "/changed"
	*svcObj.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = 1
	svcObj.Spec.Ports[0] = tcp("changed", 1)
	assert.True(t, wantExport.Equal(e))
	assert.True(t, wantService.Equal(svc))
}

// TestAudience checks that the import says to whom each export goes, so
// that the syncer needs nothing else to place the endpoints.
func TestAudience(t *testing.T) {
	exports := walkthroughObjects()
	exports[0].Export.Spec.TargetClusters = []string{key(2)}
	imp := compute(Namespaces{}, exports)
	require.Len(t, imp.Status.Exports, 2)
	assert.Equal(t, []string{key(2)}, exportStatus(imp, key(1)).TargetClusters)
	assert.Empty(t, exportStatus(imp, key(3)).TargetClusters, "every cluster")

	// An audience change is a change of the import: it reaches the syncer.
	assert.False(t, Equal(imp, Compute(Namespaces{}, ns, name, walkthrough())))
}

func TestEqual(t *testing.T) {
	a := Compute(Namespaces{}, ns, name, walkthrough())
	b := a.DeepCopy()
	b.ResourceVersion = "42"
	assert.True(t, Equal(a, b), "resourceVersion is ignored")

	b.Status.Clusters[0].Addresses = []string{}
	a.Status.Clusters[0].Addresses = nil
	assert.True(t, Equal(a, b), "nil and empty lists are equal")

	c := a.DeepCopy()
	c.Spec.Ports[0].Endpoints[1].Target.Path = "/other"
	assert.False(t, Equal(a, c))

	d := a.DeepCopy()
	d.Status.Exports[0].Conditions = []metav1.Condition{{Type: ConditionConflict, Status: metav1.ConditionTrue}}
	assert.False(t, Equal(a, d))

	assert.True(t, Equal(nil, nil))
	assert.False(t, Equal(a, nil))
	assert.False(t, Equal(nil, a))
}

func TestGatewayAddresses(t *testing.T) {
	tests := []struct {
		cluster Cluster
		want    []string
	}{
		{Cluster{GatewayHost: "192.168.1.110", GatewayIP: "192.168.1.110", GatewayPort: 81}, []string{"192.168.1.110:81"}},
		{Cluster{GatewayHost: "gw.example", GatewayIP: "10.0.0.1", GatewayPort: 80}, []string{"gw.example:80", "10.0.0.1:80"}},
		{Cluster{GatewayHost: "gw.example", GatewayPort: 80}, []string{"gw.example:80"}},
		{Cluster{GatewayHost: "fd00::1", GatewayIP: "fd00::1", GatewayPort: 80}, []string{"[fd00::1]:80"}},
		{Cluster{}, nil},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, GatewayAddresses(tc.cluster), "%+v", tc.cluster)
	}
	// Addresses the caller computed once are used as they are.
	shared := []string{"192.168.1.110:81"}
	c := cluster(1)
	c.Addresses = shared
	imp := compute(Namespaces{}, []object{{Cluster: c, Export: export(0, "*", rule(8080, path(1))), Service: service()}})
	require.Len(t, imp.Status.Clusters, 1)
	assert.Same(t, &shared[0], &imp.Status.Clusters[0].Addresses[0])
}

// benchmarkExports returns n clusters exporting httpbin with two ports each.
func benchmarkExports(n int) []object {
	exports := make([]object, n)
	for i := range exports {
		c := i + 1
		exports[i] = object{
			Cluster: cluster(c),
			Export:  export(n-i, "*", rule(8080, path(c)), rule(9090, fmt.Sprintf("/cluster-%d/metrics", c))),
			Service: service(tcp("http", 8080), tcp("metrics", 9090)),
		}
	}
	return exports
}

func BenchmarkCompute(b *testing.B) {
	exports := inputs(benchmarkExports(8))
	b.ReportAllocs()
	for b.Loop() {
		if Compute(Namespaces{}, ns, name, exports) == nil {
			b.Fatal("no import")
		}
	}
}

// manyPorts returns a Service with n TCP ports, numbered 1 to n.
func manyPorts(n int) *corev1.Service {
	ports := make([]corev1.ServicePort, n)
	for i := range ports {
		ports[i] = tcp(fmt.Sprintf("p%d", i+1), int32(i+1))
	}
	return service(ports...)
}

// manyRules returns n rules exposing ports n down to 1, each at its own
// path, so that neither the rules nor the Service's ports are in the
// same order.
func manyRules(n int) []v1alpha1.ServiceExportRule {
	return spreadRules(n, 1)
}

// spreadRules returns n rules exposing every step-th port from n*step
// down to 1, each at its own path.
func spreadRules(n, step int) []v1alpha1.ServiceExportRule {
	rules := make([]v1alpha1.ServiceExportRule, n)
	for i := range rules {
		number := int32((n-i-1)*step + 1)
		rules[i] = rule(number, fmt.Sprintf("/cluster-1/p%d", number))
	}
	return rules
}

// pathologicalExports is one export of 20,000 rules over a Service of
// 20,000 ports, which once cost seconds per recompute and a 7 MiB import.
func pathologicalExports() []object {
	return []object{{Cluster: cluster(1), Export: export(0, "*", manyRules(20000)...), Service: manyPorts(20000)}}
}

// largestValidExports is the largest export the limits allow, of
// validation.MaxExportRules rules spread over the ports of a Service of
// 20,000 ports, so that every port of the Service is looked up.
func largestValidExports() []object {
	const ports = 20000
	rules := spreadRules(validation.MaxExportRules, ports/validation.MaxExportRules)
	return []object{{Cluster: cluster(1), Export: export(0, "*", rules...), Service: manyPorts(ports)}}
}

// TestPathologicalExport checks that an export over the limits is refused
// as InvalidExport, with a short message, serves nothing, and does not stop
// the valid export of another cluster.
func TestPathologicalExport(t *testing.T) {
	exports := append(pathologicalExports(),
		object{Cluster: cluster(2), Export: export(1, "*", rule(8080, path(2))), Service: service()})
	imp := compute(Namespaces{}, exports)
	require.NotNil(t, imp)
	assertCondition(t, imp, key(1), ConditionValid, metav1.ConditionFalse, ReasonInvalidExport)
	assertCondition(t, imp, key(1), ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts)
	msg := findCondition(ExportConditions(imp, key(1), metav1.Time{}), ConditionValid).Message
	assert.Equal(t, "spec.rules: Too many: 20000: must have at most 64 items", msg)

	assert.Equal(t, []flomesh.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomesh.Endpoint{endpoint(2, path(2))}}},
		imp.Spec.Ports, "cluster-1 serves no endpoint")
	assert.Equal(t, []flomesh.SourceStatus{{Cluster: key(2), Addresses: []string{"192.168.1.110:82"}}}, imp.Status.Clusters)

	alone := compute(Namespaces{}, pathologicalExports())
	assert.Empty(t, alone.Spec.Ports)
	assert.Empty(t, alone.Status.Clusters)
}

// TestLargestValidExport checks that the largest export the limits allow,
// over a Service of 20,000 ports, is served whole.
func TestLargestValidExport(t *testing.T) {
	imp := compute(Namespaces{}, largestValidExports())
	assertCondition(t, imp, key(1), ConditionValid, metav1.ConditionTrue, ReasonValid)
	require.Len(t, imp.Spec.Ports, validation.MaxExportRules)
	step := 20000 / validation.MaxExportRules
	for i, p := range imp.Spec.Ports {
		number := int32(i*step + 1)
		assert.Equal(t, flomesh.ServicePort{Name: fmt.Sprintf("p%d", number), Port: number, Protocol: "TCP",
			Endpoints: []flomesh.Endpoint{endpoint(1, fmt.Sprintf("/cluster-1/p%d", number))}}, p)
	}
	assert.Greater(t, imp.Spec.Ports[validation.MaxExportRules-1].Port, int32(19000), "the rules span the Service's ports")

	// One rule more and the export is refused.
	exports := largestValidExports()
	exports[0].Export.Spec.Rules = spreadRules(validation.MaxExportRules+1, step)
	assertCondition(t, compute(Namespaces{}, exports), key(1), ConditionValid, metav1.ConditionFalse, ReasonInvalidExport)
}

// TestMessagesAreBounded checks that the messages Compute writes stay short
// however many errors or conflicting exports there are, and say how many
// they leave out.
func TestMessagesAreBounded(t *testing.T) {
	const bound = maxMessageLength + len("; and 1000000 more")
	message := func(imp *flomesh.ServiceImport, k, condType string) string {
		t.Helper()
		c := findCondition(ExportConditions(imp, k, metav1.Time{}), condType)
		require.NotNil(t, c)
		assert.LessOrEqual(t, len(c.Message), bound, "%s %s", k, condType)
		return c.Message
	}

	t.Run("InvalidExport", func(t *testing.T) {
		rules := manyRules(validation.MaxExportRules)
		for i := range rules {
			rules[i].Path = strings.Repeat("x", validation.MaxPathLength) // relative, and long
		}
		imp := compute(Namespaces{}, []object{{Cluster: cluster(1), Export: export(0, "*", rules...), Service: service()}})
		msg := message(imp, key(1), ConditionValid)
		assert.True(t, strings.HasPrefix(msg, `spec.rules[0].path: Invalid value: must be an absolute path (start with "/")`), msg)
		assert.NotContains(t, msg, "xxxx", "the value is not quoted")
		assert.Regexp(t, `; and \d+ more$`, msg)
	})

	t.Run("PortNotFound", func(t *testing.T) {
		imp := compute(Namespaces{}, []object{{Cluster: cluster(1), Export: export(0, "*", manyRules(validation.MaxExportRules)...), Service: service()}})
		assertCondition(t, imp, key(1), ConditionValid, metav1.ConditionFalse, ReasonPortNotFound)
		msg := message(imp, key(1), ConditionValid)
		assert.True(t, strings.HasPrefix(msg, "rule 0: port 64 is not a port of Service httpbin/httpbin; rule 1: port 63"), msg)
		assert.Regexp(t, `; and \d+ more$`, msg)
	})

	t.Run("Conflict", func(t *testing.T) {
		exports := conflictingExports(200)
		imp := compute(Namespaces{}, exports)
		for _, e := range exports {
			assertCondition(t, imp, e.Cluster.Key, ConditionConflict, metav1.ConditionTrue, ReasonPortConflict)
			msg := message(imp, e.Cluster.Key, ConditionConflict)
			assert.True(t, strings.HasPrefix(msg, "port 1 conflicts: using 1/TCP name=p1 of the oldest export ("+key(1)+") over 1/UDP name=p1 ("+key(2)+")"), msg)
			assert.Regexp(t, ` and \d+ more$`, msg)
		}
	})
}

// conflictingExports returns n clusters exporting validation.MaxExportRules
// ports each, every other cluster over UDP rather than TCP, so that every
// port of every export is in conflict.
func conflictingExports(n int) []object {
	exports := make([]object, n)
	for i := range exports {
		c := i + 1
		ports := make([]corev1.ServicePort, validation.MaxExportRules)
		rules := make([]v1alpha1.ServiceExportRule, validation.MaxExportRules)
		for j := range ports {
			proto := corev1.ProtocolTCP
			if i%2 == 1 {
				proto = corev1.ProtocolUDP
			}
			ports[j] = port(fmt.Sprintf("p%d", j+1), int32(j+1), proto)
			rules[j] = rule(int32(j+1), fmt.Sprintf("/cluster-%d/p%d", c, j+1))
		}
		exports[i] = object{Cluster: cluster(c), Export: export(i, "*", rules...), Service: service(ports...)}
	}
	return exports
}

// BenchmarkComputePathological measures the recompute of one export of
// 20,000 rules over a Service of 20,000 ports: refused as InvalidExport
// before its rules or Service are read.
func BenchmarkComputePathological(b *testing.B) {
	exports := inputs(pathologicalExports())
	b.ReportAllocs()
	for b.Loop() {
		if imp := Compute(Namespaces{}, ns, name, exports); imp == nil || len(imp.Spec.Ports) != 0 {
			b.Fatal("the pathological export is served")
		}
	}
}

// BenchmarkComputeLargestValid measures the recompute of the largest valid
// export, of validation.MaxExportRules rules, over a Service of 20,000
// ports: each port of the Service is read once.
func BenchmarkComputeLargestValid(b *testing.B) {
	exports := inputs(largestValidExports())
	b.ReportAllocs()
	for b.Loop() {
		if imp := Compute(Namespaces{}, ns, name, exports); imp == nil || len(imp.Spec.Ports) != validation.MaxExportRules {
			b.Fatal("the largest valid export is not served whole")
		}
	}
}

// BenchmarkComputeConflicts measures the merge of 200 exports of
// validation.MaxExportRules ports each, all in conflict.
func BenchmarkComputeConflicts(b *testing.B) {
	exports := inputs(conflictingExports(200))
	b.ReportAllocs()
	for b.Loop() {
		if Compute(Namespaces{}, ns, name, exports) == nil {
			b.Fatal("no import")
		}
	}
}
