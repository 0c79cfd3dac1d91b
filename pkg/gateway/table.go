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
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/routing"
	"github.com/fedmesh/fedmesh/pkg/syncer"
)

// Objects are the member's objects a table is built from, as the
// gateway's informers hold them. Build neither keeps nor changes them.
type Objects struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Imports        []*v1alpha1.ServiceImport
	Policies       []*v1alpha1.GlobalTrafficPolicy
	Ingresses      []*networkingv1.Ingress
}

// ServiceKey names a Service, and the ServiceImport and policy of the
// same namespace and name.
type ServiceKey struct{ Namespace, Name string }

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// egressService is where a federated service's ports route.
type egressService struct {
	ports map[int32]*routing.Route
	// portList is the ports in order, for messages.
	portList []int32
}

// ingressRoute is where one path of an Ingress routes.
type ingressRoute struct {
	// ingress names the Ingress, for messages.
	ingress string
	path    string
	exact   bool
	service ServiceKey
	port    int32
	// why is set when the backend cannot be resolved at all: no such
	// Service, or no such port.
	why   string
	route *routing.Route
	// rewriteFrom and rewriteTo are the export's pathRewrite, as the
	// syncer carries it in the Ingress's annotations; both set or neither.
	rewriteFrom, rewriteTo string
}

// hostPath keys the ingress routes: the rule's host ("" for every host)
// and the path, without its trailing slash for Prefix paths.
type hostPath struct{ host, path string }

// Table is everything a request needs, computed once per change of the
// member's objects and swapped whole, so that a request reads one
// consistent table without a lock and computes nothing but a choice.
type Table struct {
	cluster string
	egress  map[ServiceKey]*egressService
	exact   map[hostPath]*ingressRoute
	prefix  map[hostPath]*ingressRoute
	// hosts are the hosts with rules of their own.
	hosts map[string]bool
}

// BuildOptions are what a table depends on besides the objects.
type BuildOptions struct {
	// Cluster is the key of the gateway's member: the consumer of its
	// egress, the serving cluster of its ingress.
	Cluster string
	// IngressClass selects the Ingresses the ingress listener serves.
	IngressClass string
}

// Build computes the table of a member's objects.
//
// The egress serves every service that has a ServiceImport or a
// GlobalTrafficPolicy in the member (what fedmesh-syncer writes there), in
// a namespace that may federate: its routes are those of pkg/routing, for
// every port of the import and of the member's own Service. A Service
// that is not federated is not served: the egress is no open proxy.
//
// The ingress serves every path of every Ingress of the class: the paths
// of the oldest Ingress win when two Ingresses claim one, as an ingress
// controller would merge them. Each routes to its backend Service's ready
// endpoints, as a route of the member to itself under Locality.
func Build(opts BuildOptions, objs Objects) *Table {
	t := &Table{
		cluster: opts.Cluster,
		egress:  map[ServiceKey]*egressService{},
		exact:   map[hostPath]*ingressRoute{},
		prefix:  map[hostPath]*ingressRoute{},
		hosts:   map[string]bool{},
	}
	services := map[ServiceKey]*corev1.Service{}
	for _, s := range objs.Services {
		if s != nil {
			services[ServiceKey{s.Namespace, s.Name}] = s
		}
	}
	slicesOf := map[ServiceKey][]*discoveryv1.EndpointSlice{}
	for _, s := range objs.EndpointSlices {
		if s == nil {
			continue
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := ServiceKey{s.Namespace, name}
			slicesOf[k] = append(slicesOf[k], s)
		}
	}
	importOf := map[ServiceKey]*v1alpha1.ServiceImport{}
	for _, i := range objs.Imports {
		if i != nil && federates(i.Namespace) {
			importOf[ServiceKey{i.Namespace, i.Name}] = i
		}
	}
	policyOf := map[ServiceKey]*v1alpha1.GlobalTrafficPolicy{}
	for _, p := range objs.Policies {
		if p != nil && federates(p.Namespace) {
			policyOf[ServiceKey{p.Namespace, p.Name}] = p
		}
	}

	federated := map[ServiceKey]bool{}
	for k := range importOf {
		federated[k] = true
	}
	for k := range policyOf {
		federated[k] = true
	}
	for k := range federated {
		imp, svc := importOf[k], services[k]
		var ports []int32
		if imp != nil {
			for _, p := range imp.Spec.Ports {
				if p.Protocol == "" || string(p.Protocol) == string(corev1.ProtocolTCP) {
					ports = append(ports, p.Port)
				}
			}
		}
		if svc != nil && svc.Spec.Type != corev1.ServiceTypeExternalName {
			for _, p := range svc.Spec.Ports {
				if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
					ports = append(ports, p.Port)
				}
			}
		}
		slices.Sort(ports)
		ports = slices.Compact(ports)
		var policy *v1alpha1.GlobalTrafficPolicySpec
		if p := policyOf[k]; p != nil {
			policy = &p.Spec
		}
		es := &egressService{ports: map[int32]*routing.Route{}, portList: ports}
		for _, port := range ports {
			r := routing.Compute(routing.Input{
				Consumer:      opts.Cluster,
				Port:          port,
				LocalBackends: routing.LocalBackends(svc, slicesOf[k], port),
				Import:        imp,
				Policy:        policy,
			})
			es.ports[port] = &r
		}
		t.egress[k] = es
	}

	// The ingress: oldest Ingress first, so that its paths win.
	ings := slices.Clone(objs.Ingresses)
	ings = slices.DeleteFunc(ings, func(i *networkingv1.Ingress) bool { return i == nil || !ofClass(i, opts.IngressClass) })
	slices.SortFunc(ings, func(a, b *networkingv1.Ingress) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, ing := range ings {
		from, to := ing.Annotations[syncer.AnnotationRewriteFrom], ing.Annotations[syncer.AnnotationRewriteTo]
		if from == "" || to == "" {
			from, to = "", "" // half a rewrite is none, as the syncer writes it
		}
		from = strings.TrimPrefix(from, "^")
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			host := strings.ToLower(rule.Host)
			if host != "" {
				t.hosts[host] = true
			}
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil || !strings.HasPrefix(p.Path, "/") {
					continue // a resource backend, or a path no request has
				}
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				key := hostPath{host, p.Path}
				m := t.exact
				if !exact {
					key.path = trimSlash(p.Path)
					m = t.prefix
				}
				if _, taken := m[key]; taken {
					continue
				}
				m[key] = t.ingressRoute(ing, p, services, slicesOf, from, to)
			}
		}
	}
	return t
}

// ingressRoute resolves one path of an Ingress to its backend's ready
// endpoints.
func (t *Table) ingressRoute(ing *networkingv1.Ingress, p networkingv1.HTTPIngressPath, services map[ServiceKey]*corev1.Service,
	slicesOf map[ServiceKey][]*discoveryv1.EndpointSlice, from, to string) *ingressRoute {
	b := p.Backend.Service
	ir := &ingressRoute{
		ingress:     ing.Namespace + "/" + ing.Name,
		path:        p.Path,
		exact:       p.PathType != nil && *p.PathType == networkingv1.PathTypeExact,
		service:     ServiceKey{ing.Namespace, b.Name},
		rewriteFrom: from,
		rewriteTo:   to,
	}
	svc := services[ir.service]
	port := b.Port.Number
	switch {
	case svc == nil:
		ir.why = fmt.Sprintf("Service %s does not exist in %s", ir.service, t.cluster)
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		ir.why = fmt.Sprintf("Service %s is of type ExternalName, which has no endpoints", ir.service)
	case b.Port.Name != "":
		port = 0
		for _, sp := range svc.Spec.Ports {
			if sp.Name == b.Port.Name {
				port = sp.Port
			}
		}
		if port == 0 {
			ir.why = fmt.Sprintf("Service %s has no port named %q", ir.service, b.Port.Name)
		}
	}
	ir.port = port
	var local []routing.Backend
	if ir.why == "" {
		local = routing.LocalBackends(svc, slicesOf[ir.service], port)
	}
	r := routing.Compute(routing.Input{Consumer: t.cluster, Port: port, LocalBackends: local})
	ir.route = &r
	return ir
}

// ofClass reports whether the ingress listener serves ing: its
// ingressClassName, or the older annotation, names the class.
func ofClass(ing *networkingv1.Ingress, class string) bool {
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == class
	}
	return ing.Annotations["kubernetes.io/ingress.class"] == class
}

// federates reports whether a namespace may hold federated services. The
// reserved namespaces never do, whatever a member holds.
func federates(ns string) bool { return !slices.Contains(imports.ReservedNamespaces, ns) }

func trimSlash(p string) string {
	if p == "/" {
		return p
	}
	return strings.TrimSuffix(p, "/")
}

// matchIngress finds the route of a request to the ingress listener, by
// the rules of Kubernetes Ingress: the rules of the request's host, else
// those for every host; the longest matching path, an Exact path before a
// Prefix path of the same length; a Prefix path matches by path element
// ("/foo" matches "/foo", "/foo/" and "/foo/bar", never "/foobar"), and
// a trailing slash of either is ignored.
func (t *Table) matchIngress(host, path string) *ingressRoute {
	host = strings.ToLower(stripPort(host))
	if t.hosts[host] {
		if r := t.matchPath(host, path); r != nil {
			return r
		}
	}
	if host != "" {
		// A wildcard rule matches one label: *.example.com
		if i := strings.IndexByte(host, '.'); i > 0 {
			if w := "*" + host[i:]; t.hosts[w] {
				if r := t.matchPath(w, path); r != nil {
					return r
				}
			}
		}
	}
	return t.matchPath("", path)
}

func (t *Table) matchPath(host, path string) *ingressRoute {
	if r := t.exact[hostPath{host, path}]; r != nil {
		return r
	}
	// Prefix: the longest element-wise prefix of path.
	p := trimSlash(path)
	for {
		if r := t.prefix[hostPath{host, p}]; r != nil {
			return r
		}
		if p == "/" || p == "" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			p = "/"
		} else {
			p = p[:i]
		}
	}
}

// parseServiceHost reads the host of an egress request as a Service and a
// port: NAME.NAMESPACE, NAME.NAMESPACE.svc or NAME.NAMESPACE.svc.DOMAIN,
// in any case and with an optional trailing dot, then an optional :PORT
// (80 without). NAME must be a DNS-1035 label and NAMESPACE a DNS-1123
// label, as the API requires of a Service.
func parseServiceHost(host, clusterDomain string) (ServiceKey, int32, error) {
	h, portStr := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		h, portStr = host[:i], host[i+1:]
	}
	port := int32(80)
	if portStr != "" {
		n := 0
		for _, c := range portStr {
			if c < '0' || c > '9' || n > 65535 {
				return ServiceKey{}, 0, fmt.Errorf("port %q is not a number from 1 to 65535", portStr)
			}
			n = n*10 + int(c-'0')
		}
		if n < 1 || n > 65535 {
			return ServiceKey{}, 0, fmt.Errorf("port %q is not a number from 1 to 65535", portStr)
		}
		port = int32(n)
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	for _, suffix := range []string{".svc." + clusterDomain, ".svc"} {
		if s, ok := strings.CutSuffix(h, suffix); ok {
			h = s
			break
		}
	}
	name, ns, ok := strings.Cut(h, ".")
	if !ok || strings.Contains(ns, ".") {
		return ServiceKey{}, 0, fmt.Errorf("want NAME.NAMESPACE, NAME.NAMESPACE.svc or NAME.NAMESPACE.svc.%s, with an optional :PORT", clusterDomain)
	}
	if !isDNSLabel(name, true) || !isDNSLabel(ns, false) {
		return ServiceKey{}, 0, fmt.Errorf("%q is not a Service name and namespace", h)
	}
	return ServiceKey{Namespace: ns, Name: name}, port, nil
}

// isDNSLabel reports whether s is a DNS-1123 label: 1 to 63 lower-case
// letters, digits and '-', starting and ending with a letter or digit;
// with letterFirst, a DNS-1035 label, which starts with a letter. It is
// validation.IsDNS1123Label and IsDNS1035Label (FuzzParseServiceHost holds
// it to them) without their regular expressions: it runs on every egress
// request, where the pair took about 0.6 µs and this takes 0.02
// (BenchmarkParseServiceHost).
func isDNSLabel(s string, letterFirst bool) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9':
			if i == 0 && letterFirst {
				return false
			}
		case c == '-':
			if i == 0 || i == len(s)-1 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// stripPort removes the port of a Host header.
func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}
