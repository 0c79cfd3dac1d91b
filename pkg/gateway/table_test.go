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

package gateway

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/routing"
	"github.com/fedmesh/fedmesh/pkg/syncer"
)

const (
	c1 = "default/default/default/cluster-1"
	c2 = "default/default/default/cluster-2"
	c3 = "default/default/default/cluster-3"
)

func service(ns, name string, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

func endpointSlice(ns, svc string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

// serviceImport exports port 8080 of ns/name from each cluster at its
// gateway target.
func serviceImport(ns, name string, targets map[string]v1alpha1.Target) *v1alpha1.ServiceImport {
	imp := &v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	port := v1alpha1.ServicePort{Port: 8080, Protocol: "TCP"}
	for _, c := range []string{c1, c2, c3} {
		if t, ok := targets[c]; ok {
			port.Endpoints = append(port.Endpoints, v1alpha1.Endpoint{ClusterKey: c, Target: t})
		}
	}
	imp.Spec.Ports = []v1alpha1.ServicePort{port}
	return imp
}

func gtp(ns, name string, lb v1alpha1.LoadBalancerType, targets ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: lb}}
	for _, t := range targets {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: t})
	}
	return p
}

// tiers is a route in one line: "tier | tier", each a list of cluster
// names, "local" for the consumer's own endpoints.
func tiers(r *routing.Route) string {
	if r == nil {
		return "<none>"
	}
	var out []string
	for _, t := range r.Tiers {
		var names []string
		for _, d := range t {
			n := d.Cluster[strings.LastIndexByte(d.Cluster, '/')+1:]
			if d.Local {
				n = "local"
			}
			names = append(names, n)
		}
		out = append(out, strings.Join(names, ","))
	}
	return strings.Join(out, " | ")
}

var walkthroughTargets = map[string]v1alpha1.Target{
	c1: {Host: "192.0.2.1", Port: 81, Path: "/cluster-1/httpbin-mesh"},
	c3: {Host: "192.0.2.3", Port: 83, Path: "/cluster-3/httpbin-mesh"},
}

// TestBuildEgress: the walkthrough, from cluster-2, and what the egress
// refuses to serve.
func TestBuildEgress(t *testing.T) {
	imp := serviceImport("httpbin", "httpbin", walkthroughTargets)
	localSvc := []*corev1.Service{service("httpbin", "httpbin", 8080)}
	localEPs := []*discoveryv1.EndpointSlice{endpointSlice("httpbin", "httpbin", 8080, "10.0.2.5")}
	cases := []struct {
		name string
		objs Objects
		key  ServiceKey
		port int32
		want string
	}{
		{name: "Locality, nothing local: no route",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{imp}},
			key:  ServiceKey{"httpbin", "httpbin"}, port: 8080, want: ""},
		{name: "FailOver, nothing local: the targets",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{imp}, Policies: []*v1alpha1.GlobalTrafficPolicy{gtp("httpbin", "httpbin", v1alpha1.FailOverLbType, c1, c3)}},
			key:  ServiceKey{"httpbin", "httpbin"}, port: 8080, want: "cluster-1,cluster-3"},
		{name: "FailOver with local endpoints: local first",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{imp}, Policies: []*v1alpha1.GlobalTrafficPolicy{gtp("httpbin", "httpbin", v1alpha1.FailOverLbType, c1, c3)},
				Services: localSvc, EndpointSlices: localEPs},
			key: ServiceKey{"httpbin", "httpbin"}, port: 8080, want: "local | cluster-1,cluster-3"},
		{name: "ActiveActive: everyone",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{imp}, Policies: []*v1alpha1.GlobalTrafficPolicy{gtp("httpbin", "httpbin", v1alpha1.ActiveActiveLbType, c1, c3)},
				Services: localSvc, EndpointSlices: localEPs},
			key: ServiceKey{"httpbin", "httpbin"}, port: 8080, want: "local,cluster-1,cluster-3"},
		{name: "a policy without an import: the local Service's ports",
			objs: Objects{Policies: []*v1alpha1.GlobalTrafficPolicy{gtp("httpbin", "httpbin", v1alpha1.FailOverLbType, c1)},
				Services: localSvc, EndpointSlices: localEPs},
			key: ServiceKey{"httpbin", "httpbin"}, port: 8080, want: "local"},
		{name: "a local Service alone is not federated: not served",
			objs: Objects{Services: localSvc, EndpointSlices: localEPs},
			key:  ServiceKey{"httpbin", "httpbin"}, port: 8080, want: "<not served>"},
		{name: "a reserved namespace is never served",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{serviceImport("kube-system", "kube-dns", walkthroughTargets)}},
			key:  ServiceKey{"kube-system", "kube-dns"}, port: 8080, want: "<not served>"},
		{name: "a port nobody has",
			objs: Objects{Imports: []*v1alpha1.ServiceImport{imp}},
			key:  ServiceKey{"httpbin", "httpbin"}, port: 9090, want: "<no port>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := Build(BuildOptions{Cluster: c2, IngressClass: "pipy"}, tc.objs)
			svc := tb.egress[tc.key]
			got := "<not served>"
			if svc != nil {
				got = "<no port>"
				if r := svc.ports[tc.port]; r != nil {
					got = tiers(r)
				}
			}
			if got != tc.want {
				t.Errorf("route = %q, want %q", got, tc.want)
			}
		})
	}
}

func ingress(name string, created time.Time, class string, paths ...networkingv1.HTTPIngressPath) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: name, CreationTimestamp: metav1.NewTime(created)}}
	if class != "" {
		ing.Spec.IngressClassName = &class
	}
	ing.Spec.Rules = []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}}
	return ing
}

func path(p string, typ networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: &typ, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: svc, Port: networkingv1.ServiceBackendPort{Number: 8080}}}}
}

// TestMatchIngress: Kubernetes Ingress path semantics.
func TestMatchIngress(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	objs := Objects{
		Services: []*corev1.Service{service("httpbin", "a", 8080), service("httpbin", "b", 8080), service("httpbin", "c", 8080), service("httpbin", "old", 8080)},
		Ingresses: []*networkingv1.Ingress{
			ingress("fedmesh-a", t0.Add(time.Minute), "pipy",
				path("/foo", networkingv1.PathTypePrefix, "a"),
				path("/foo/bar", networkingv1.PathTypeExact, "b"),
				path("/foo/bar/", networkingv1.PathTypePrefix, "c"),
				path("/taken", networkingv1.PathTypePrefix, "a")),
			// Older: its /taken wins.
			ingress("older", t0, "pipy", path("/taken", networkingv1.PathTypePrefix, "old")),
			// Another class: never served.
			ingress("nginx", t0, "nginx", path("/", networkingv1.PathTypePrefix, "old")),
			ingress("unclassed", t0, "", path("/", networkingv1.PathTypePrefix, "old")),
		},
	}
	tb := Build(BuildOptions{Cluster: c1, IngressClass: "pipy"}, objs)
	for _, tc := range []struct{ path, want string }{
		{"/foo", "a"},
		{"/foo/", "a"},
		{"/foo/baz", "a"},
		{"/foobar", ""},
		{"/foo/bar", "b"}, // Exact before the Prefix of the same path
		{"/foo/bar/", "c"},
		{"/foo/bar/x", "c"},
		{"/taken/x", "old"},
		{"/", ""},
		{"/other", ""},
	} {
		got := ""
		if r := tb.matchIngress("127.0.0.1:81", tc.path); r != nil {
			got = r.service.Name
		}
		if got != tc.want {
			t.Errorf("%s: served by %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestIngressRoute: an Ingress path's backend and rewrite, as the syncer
// writes them, and why a path has no route.
func TestIngressRoute(t *testing.T) {
	ing := ingress("fedmesh-httpbin", time.Unix(1, 0), "pipy", path("/cluster-1/httpbin-mesh", networkingv1.PathTypePrefix, "httpbin"))
	ing.Annotations = map[string]string{syncer.AnnotationRewriteFrom: "^/cluster-1/httpbin-mesh", syncer.AnnotationRewriteTo: "/"}
	missing := ingress("fedmesh-missing", time.Unix(1, 0), "pipy", path("/missing", networkingv1.PathTypePrefix, "missing"))
	tb := Build(BuildOptions{Cluster: c1, IngressClass: "pipy"}, Objects{
		Services:       []*corev1.Service{service("httpbin", "httpbin", 8080)},
		EndpointSlices: []*discoveryv1.EndpointSlice{endpointSlice("httpbin", "httpbin", 8080, "10.0.1.5", "127.0.0.1")},
		Ingresses:      []*networkingv1.Ingress{ing, missing},
	})
	r := tb.matchIngress("", "/cluster-1/httpbin-mesh/get")
	if r == nil || tiers(r.route) != "local" || len(r.route.Tiers[0][0].Backends) != 1 || r.route.Tiers[0][0].Backends[0].Host != "10.0.1.5" {
		t.Fatalf("route of the export = %+v, want the one ready non-loopback endpoint", r)
	}
	for _, tc := range []struct{ in, want string }{
		{"/cluster-1/httpbin-mesh/get", "/get"},
		{"/cluster-1/httpbin-mesh", "/"},
		{"/cluster-1/httpbin-mesh/", "/"},
	} {
		if got, _ := r.rewrite(routing.Destination{}, routing.Backend{}, tc.in, ""); got != tc.want {
			t.Errorf("rewrite(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	m := tb.matchIngress("", "/missing")
	if m == nil || len(m.route.Tiers) != 0 || !strings.Contains(m.why, "does not exist") {
		t.Errorf("a path to a missing Service = %+v, want no tiers and a reason", m)
	}
}

func TestParseServiceHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		key  ServiceKey
		port int32
		err  bool
	}{
		{host: "httpbin.httpbin:8080", key: ServiceKey{"httpbin", "httpbin"}, port: 8080},
		{host: "httpbin.httpbin", key: ServiceKey{"httpbin", "httpbin"}, port: 80},
		{host: "httpbin.httpbin.svc:8080", key: ServiceKey{"httpbin", "httpbin"}, port: 8080},
		{host: "HTTPBIN.httpbin.svc.cluster.local.:8080", key: ServiceKey{"httpbin", "httpbin"}, port: 8080},
		{host: "httpbin", err: true},
		{host: "a.b.c", err: true},
		{host: "httpbin.httpbin.svc.example.org", err: true},
		{host: "httpbin.httpbin:0", err: true},
		{host: "httpbin.httpbin:99999", err: true},
		{host: "httpbin.httpbin:80a", err: true},
		{host: "127.0.0.1:80", err: true},
		{host: "[::1]:80", err: true},
		{host: "-x.httpbin", err: true},
		{host: "", err: true},
	} {
		key, port, err := parseServiceHost(tc.host, "cluster.local")
		if (err != nil) != tc.err || (err == nil && (key != tc.key || port != tc.port)) {
			t.Errorf("parseServiceHost(%q) = %v, %d, %v; want %v, %d, error %v", tc.host, key, port, err, tc.key, tc.port, tc.err)
		}
	}
}
