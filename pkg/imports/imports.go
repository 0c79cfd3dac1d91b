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

// Package imports computes the ServiceImport of an exported service from the
// ServiceExports and Services of the member clusters that export it.
//
// It is pure: it knows no clients, servers or clocks, and its result depends
// only on its arguments, never on their order. Every replica of
// fedmesh-apiserver therefore computes byte-identical imports from the same
// member state, which lets the imports be served from memory without a
// leader and compared cheaply before a watch event is sent.
//
// The rules follow KEP-1645 (Multi-Cluster Services API):
//
//   - Only the namespaces that federate export (Namespaces): never the
//     cluster's system namespaces or fedmesh's own, and, when the
//     administrator lists some, only those. An export elsewhere is
//     Valid=False, reason NamespaceNotFederated, whatever its content, so no
//     member can make fedmesh write into another member's kube-system.
//   - An export is Valid when its spec passes
//     validation.ValidateServiceExportSpec, the rules and limits the
//     member's CRD enforces (at most validation.MaxExportRules rules, each
//     with an absolute path, a port exposed at one path only, bounded
//     strings and lists), else it is InvalidExport; and when the cluster has
//     a Service of the same namespace and name, the Service is not an
//     ExternalName, every rule of the export names a port of the Service,
//     and the syncer has not reported that the export's paths are taken at
//     the cluster's gateway (PathsAvailable=False, reason IngressConflict).
//     Invalid exports serve nothing.
//   - Valid exports are merged. Where they disagree on a property — the
//     definition of a port number, the type (headless or not), the session
//     affinity, the serviceAccountName — the oldest export (by creation
//     time, ties broken by cluster key) wins, and every export of the
//     service is marked Conflict=True until they agree again.
//   - Each exported port lists one endpoint per valid exporting cluster: the
//     cluster's gateway and the export rule's path. The status lists each
//     export's audience (its targetClusters), so that the syncer writes the
//     endpoints only where they are exported to, from the import alone.
//
// Its inputs are types of its own, ServiceExport and Service, which hold
// exactly the fields of the API objects that it reads and that validation
// judges; ExportOf and ServiceOf take them of the objects. A cache of the
// members' objects keeps these values and hands them to Compute as they
// are, so a field Compute comes to read is one the compiler makes the
// cache keep.
//
// The inputs are the members', and neither their exports nor their Services
// are under fedmesh's control, so the cost of a computation is bounded by
// what fedmesh accepts, not by what a member holds:
//
//   - An export is judged on its own first. One over the limits is refused
//     as InvalidExport without its rules being walked or its Service read,
//     whatever their size.
//   - The rest is linear, up to sorting, in the rules of the valid exports
//     plus the ports of their Services: each Service's ports are read once,
//     and the ports of all the exports are merged by one sort.
//   - A message fedmesh writes into a condition lists what fits in about
//     1 KiB (maxMessageLength) and counts the rest, so that neither an
//     import nor a member's ServiceExport grows with the number of errors
//     or of conflicting exports.
package imports

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/gob"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

// Cluster is what the computation needs of a member cluster.
type Cluster struct {
	// Name of the Cluster object.
	Name string
	// Key is the cluster key, region/zone/group/name. It identifies the
	// cluster in endpoints and statuses, and breaks ties between exports
	// created in the same second.
	Key string
	// GatewayHost is the address (IP or DNS name) of the cluster's gateway.
	GatewayHost string
	// GatewayIP is GatewayHost if it is an IP, else its address as the
	// caller resolved it. It may be empty; the endpoint then has no IP and
	// consumers use the host.
	GatewayIP string
	// GatewayPort is the port of the cluster's gateway.
	GatewayPort int32
	// Addresses, when set, are GatewayAddresses of the cluster, computed
	// once by the caller: every import the cluster serves then shares one
	// slice instead of holding its own copy.
	Addresses []string
}

// Export is one cluster's export of a service: what Compute reads of its
// ServiceExport and of the Service of the same namespace and name.
type Export struct {
	Cluster Cluster
	// Export is the member's ServiceExport. An Export whose Export is nil is
	// ignored, so callers may pass the slots of deleted exports.
	Export *ServiceExport
	// Service is the member's Service of the export's namespace and name,
	// or nil when the Service does not exist.
	Service *Service
	// NotReadySince is when the cluster last stopped being Ready; zero
	// while it is Ready. Compute ignores it: Available, which the caller
	// applies first, withdraws the exports of clusters past their grace.
	NotReadySince time.Time
}

// ServiceExport is what Compute reads of a member's ServiceExport, and
// nothing else: ExportOf takes it of one, so that a cache of exports keeps
// these values as they are and hands them to Compute unchanged. Its fields
// are the export's identity and age, which order the exports of a service,
// the generation the conditions observe, the spec as validation judges it
// and the merge reads it (all of it but sessionSticky, which neither
// reads), and the syncer's report that the export's paths are taken.
//
// Compute never changes a ServiceExport; its caller must not change one
// that Compute may be reading.
type ServiceExport struct {
	UID               types.UID
	CreationTimestamp metav1.Time
	Generation        int64
	// ServiceAccountName, Rules, LoadBalancer, PathRewrite and
	// TargetClusters are those of the spec.
	ServiceAccountName string
	Rules              []ExportRule
	LoadBalancer       flomesh.ExportLoadBalancer
	PathRewrite        *flomesh.PathRewrite
	TargetClusters     []string
	// IngressConflict is the message of the PathsAvailable=False the
	// syncer reported for the current generation (see IngressConflict),
	// or nil when it reported none.
	IngressConflict *string
}

// ExportRule is a rule of an export. It is the API's own type, which
// validation reads whole: its port, its path and the path's type.
type ExportRule = flomesh.ServiceExportRule

// Service is what Compute reads of a member's Service, and nothing else:
// ServiceOf takes it of one. Strings of enumerations are the API's
// constants, so that a cache of Services does not keep a decoded copy of
// them in every value.
type Service struct {
	Type            corev1.ServiceType
	SessionAffinity corev1.ServiceAffinity
	Ports           []ServicePort
	// ClientIPTimeoutSeconds is SessionAffinityConfig.ClientIP.TimeoutSeconds
	// when HasClientIPTimeout is set.
	ClientIPTimeoutSeconds int32
	// Headless is whether the cluster IP is "None".
	Headless bool
	// HasClientIP is whether SessionAffinityConfig.ClientIP is set.
	HasClientIP        bool
	HasClientIPTimeout bool
}

// ServicePort is a port of a Service, without the target and node ports,
// which the import does not carry.
type ServicePort struct {
	Name     string
	Protocol corev1.Protocol
	// AppProtocol is "" when unset: the API rejects an empty appProtocol.
	AppProtocol string
	Port        int32
}

// ExportOf returns what Compute reads of e. It shares strings with e and
// nothing else, so e may be dropped, or changed, afterwards.
func ExportOf(e *v1alpha1.ServiceExport) *ServiceExport {
	x := &ServiceExport{
		UID:                e.UID,
		CreationTimestamp:  e.CreationTimestamp,
		Generation:         e.Generation,
		ServiceAccountName: e.Spec.ServiceAccountName,
		LoadBalancer:       loadBalancer(flomesh.ExportLoadBalancer(e.Spec.LoadBalancer)),
		TargetClusters:     slices.Clone(e.Spec.TargetClusters),
	}
	if r := e.Spec.PathRewrite; r != nil {
		x.PathRewrite = &flomesh.PathRewrite{From: r.From, To: r.To}
	}
	if len(e.Spec.Rules) > 0 {
		x.Rules = make([]ExportRule, len(e.Spec.Rules))
		for i, r := range e.Spec.Rules {
			x.Rules[i] = ExportRule{PortNumber: r.PortNumber, Path: r.Path, PathType: pathType(flomesh.PathType(r.PathType))}
		}
	}
	if msg, found := IngressConflict(e); found {
		x.IngressConflict = &msg
	}
	return x
}

// Equal reports whether e and o are the same input to Compute.
func (e *ServiceExport) Equal(o *ServiceExport) bool {
	return e.UID == o.UID && e.CreationTimestamp.Equal(&o.CreationTimestamp) && e.Generation == o.Generation &&
		e.ServiceAccountName == o.ServiceAccountName && slices.Equal(e.Rules, o.Rules) &&
		e.LoadBalancer == o.LoadBalancer && equalPointees(e.PathRewrite, o.PathRewrite) &&
		slices.Equal(e.TargetClusters, o.TargetClusters) && equalPointees(e.IngressConflict, o.IngressConflict)
}

// ServiceOf returns what Compute reads of svc. It shares strings with svc
// and nothing else, so svc may be dropped, or changed, afterwards.
func ServiceOf(svc *corev1.Service) *Service {
	s := &Service{
		Type:            serviceType(svc.Spec.Type),
		SessionAffinity: serviceAffinity(svc.Spec.SessionAffinity),
		Headless:        svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	if cfg := svc.Spec.SessionAffinityConfig; cfg != nil && cfg.ClientIP != nil {
		s.HasClientIP = true
		if t := cfg.ClientIP.TimeoutSeconds; t != nil {
			s.HasClientIPTimeout, s.ClientIPTimeoutSeconds = true, *t
		}
	}
	if len(svc.Spec.Ports) > 0 {
		s.Ports = make([]ServicePort, len(svc.Spec.Ports))
		for i, p := range svc.Spec.Ports {
			s.Ports[i] = ServicePort{Name: p.Name, Protocol: protocol(p.Protocol), Port: p.Port}
			if p.AppProtocol != nil {
				s.Ports[i].AppProtocol = *p.AppProtocol
			}
		}
	}
	return s
}

// Equal reports whether s and o are the same input to Compute.
func (s *Service) Equal(o *Service) bool {
	return s.Type == o.Type && s.SessionAffinity == o.SessionAffinity &&
		s.ClientIPTimeoutSeconds == o.ClientIPTimeoutSeconds && s.Headless == o.Headless &&
		s.HasClientIP == o.HasClientIP && s.HasClientIPTimeout == o.HasClientIPTimeout &&
		slices.Equal(s.Ports, o.Ports)
}

// equalPointees reports whether a and b are both nil, or point to equal
// values.
func equalPointees[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// intern returns the constant of known equal to v, or v. A cache that
// keeps an enumeration's constant rather than the decoded string keeps
// one copy of it, not one per object.
func intern[T ~string](v T, known ...T) T {
	for _, c := range known {
		if v == c {
			return c
		}
	}
	return v
}

func serviceType(t corev1.ServiceType) corev1.ServiceType {
	return intern(t, corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)
}

func serviceAffinity(a corev1.ServiceAffinity) corev1.ServiceAffinity {
	return intern(a, corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP)
}

func protocol(p corev1.Protocol) corev1.Protocol {
	return intern(p, corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
}

func pathType(t flomesh.PathType) flomesh.PathType {
	return intern(t, flomesh.PathTypePrefix, flomesh.PathTypeExact)
}

func loadBalancer(l flomesh.ExportLoadBalancer) flomesh.ExportLoadBalancer {
	return intern(l, flomesh.RoundRobinLoadBalancer, flomesh.HashingLoadBalancer, flomesh.LeastWorkLoadBalancer)
}

// Compute returns the ServiceImport of namespace/name given every cluster's
// export of it, in any order, and the namespaces that federate. It returns nil when exports holds no export.
//
// The caller pairs each export with its cluster and Service; Compute trusts
// that the exports are of namespace/name and that each cluster appears once.
// Should a cluster key appear twice, the older export is used and the other
// ignored, so that the result stays well-formed (the statuses are maps keyed
// by cluster).
//
// The import exists as long as any export does, even when none is valid:
// its status then carries the Valid=False conditions the syncer writes back
// onto the exports, and its spec has no ports.
//
// The work is proportional to the number of exports, their rules and their
// Services' ports (see the package comment), not to the size of the
// federation: the caller indexes exports by service and recomputes only the
// services that changed.
//
// Metadata is derived from the inputs, so that every replica agrees: the UID
// is a name-based UUID (see UID), the creation time is that of the oldest
// export. ResourceVersion is left to the caller, which owns the counter.
//
// The import shares no memory with the exports, so the caller may hand it
// out while its caches change, except Cluster.Addresses, which it shares
// and the caller must not change.
func Compute(namespaces Namespaces, namespace, name string, exports []Export) *flomesh.ServiceImport {
	federates, why := namespaces.Federates(namespace)
	byKey := make([]*candidate, 0, len(exports))
	for i := range exports {
		if exports[i].Export == nil {
			continue
		}
		if !federates {
			byKey = append(byKey, &candidate{cluster: exports[i].Cluster, export: exports[i].Export, service: exports[i].Service,
				validReason: ReasonNamespaceNotFederated, validMessage: why})
			continue
		}
		byKey = append(byKey, newCandidate(namespace, name, &exports[i]))
	}
	if len(byKey) == 0 {
		return nil
	}
	// Sort by key, the oldest first among equal keys, and keep one export
	// per key.
	slices.SortFunc(byKey, func(a, b *candidate) int {
		if c := strings.Compare(a.cluster.Key, b.cluster.Key); c != 0 {
			return c
		}
		if c := compareAge(a, b); c != 0 {
			return c
		}
		return compareInputs(a, b)
	})
	byKey = slices.CompactFunc(byKey, func(a, b *candidate) bool { return a.cluster.Key == b.cluster.Key })
	for i, c := range byKey {
		c.keyOrder = i
	}

	byAge := slices.Clone(byKey)
	slices.SortFunc(byAge, compareAge)
	for i, c := range byAge {
		c.ageOrder = i
	}

	r := resolve(byAge)

	imp := &flomesh.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         namespace,
			Name:              name,
			UID:               UID(namespace, name),
			CreationTimestamp: byAge[0].export.CreationTimestamp,
		},
		Spec: flomesh.ServiceImportSpec{
			Ports: r.servicePorts(),
			Type:  flomesh.ClusterSetIP,
		},
	}
	if w := r.winner; w != nil {
		if w.headless {
			imp.Spec.Type = flomesh.Headless
		}
		imp.Spec.SessionAffinity = w.affinity
		imp.Spec.SessionAffinityConfig = w.affinityConfig.DeepCopy()
		imp.Spec.ServiceAccountName = w.serviceAccountName
	}
	imp.Status = r.status(byKey)
	return imp
}

// uidNamespace is the RFC 4122 name space for URLs, of which the import
// UIDs are version-5 (SHA-1, name-based) UUIDs.
var uidNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// UID returns the UID of the ServiceImport namespace/name: the version-5
// UUID, in the URL name space, of "flomesh.io/serviceimport/<ns>/<name>".
//
// An import is computed, never stored, so no server assigns it a UID. A
// name-based one is the same on every replica and across restarts, so
// clients that key caches by UID see one object, and it changes only when
// the name does.
func UID(namespace, name string) types.UID {
	h := sha1.New()
	h.Write(uidNamespace[:])
	h.Write([]byte("flomesh.io/serviceimport/" + namespace + "/" + name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
}

// Equal reports whether a and b are the same import, ignoring their
// ResourceVersions. The caller bumps its resource version and sends a watch
// event only when a recomputed import is not Equal to the one it serves, so
// that member churn that changes nothing (a resync, a Service's status)
// causes no events. Nil and empty lists are equal, as they serialize alike.
func Equal(a, b *flomesh.ServiceImport) bool {
	if a == nil || b == nil {
		return a == b
	}
	am, bm := a.ObjectMeta, b.ObjectMeta
	am.ResourceVersion, bm.ResourceVersion = "", ""
	return a.TypeMeta == b.TypeMeta &&
		equality.Semantic.DeepEqual(am, bm) &&
		equality.Semantic.DeepEqual(a.Spec, b.Spec) &&
		equality.Semantic.DeepEqual(a.Status, b.Status)
}

// portSpec is what KEP-1645 requires the exports of a service to agree on
// for one port of a given number.
type portSpec struct {
	name     string
	protocol flomesh.Protocol
	// appProtocol is "" when unset; the API rejects an empty appProtocol,
	// so the two cannot be confused.
	appProtocol string
}

func (p portSpec) String(number int32) string {
	s := fmt.Sprintf("%d/%s", number, p.protocol)
	if p.name != "" {
		s += " name=" + p.name
	}
	if p.appProtocol != "" {
		s += " appProtocol=" + p.appProtocol
	}
	return s
}

func comparePortSpecs(a, b portSpec) int {
	if c := strings.Compare(string(a.protocol), string(b.protocol)); c != 0 {
		return c
	}
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c
	}
	return strings.Compare(a.appProtocol, b.appProtocol)
}

// formatSpecs renders the definition of a port number, which has several
// ports when the Service serves the number on several protocols.
func formatSpecs(number int32, specs []portSpec) string {
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.String(number)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// exportedPort is one rule of a valid export: a port number of the Service
// with every Service port of that number, and the gateway path serving it.
type exportedPort struct {
	number int32
	path   string
	// specs are sorted by protocol, then name. A rule names only a number,
	// so it exports every protocol the Service serves on it (such as DNS on
	// 53/TCP and 53/UDP), and exports must agree on the whole set.
	specs []portSpec
}

// candidate is one export being merged.
type candidate struct {
	cluster Cluster
	export  *ServiceExport
	service *Service
	// keyOrder and ageOrder are the candidate's places among the exports
	// sorted by cluster key, the order of the endpoints of a port, and by
	// age, the order in which conflicts are resolved.
	keyOrder, ageOrder int

	validReason  string
	validMessage string

	// The rest is set only for valid exports.

	// ports are sorted by number.
	ports              []exportedPort
	headless           bool
	affinity           flomesh.ServiceAffinity
	affinityConfig     *flomesh.SessionAffinityConfig
	serviceAccountName string
}

func (c *candidate) valid() bool { return c.validReason == ReasonValid }

// compareAge orders exports oldest first, as KEP-1645 resolves conflicts.
// Creation times have a resolution of one second, so ties are common and
// are broken by cluster key, then UID, to give every replica one order.
// compareInputs orders two candidates by everything Compute reads of them.
// Only the exports of one cluster key, equally old and with one UID, need
// it: a caller that passes a cluster twice breaks Compute's contract, yet
// the import must not depend on the order even then. Such ties are rare
// enough that encoding the inputs costs nothing that matters.
func compareInputs(a, b *candidate) int {
	encode := func(c *candidate) []byte {
		// gob keeps strings byte for byte (JSON would merge invalid UTF-8
		// into U+FFFD) and follows pointers. The inputs are plain data, so
		// encoding cannot fail.
		var b bytes.Buffer
		_ = gob.NewEncoder(&b).Encode(struct {
			Cluster Cluster
			Export  *ServiceExport
			Service *Service
		}{c.cluster, c.export, c.service})
		return b.Bytes()
	}
	return bytes.Compare(encode(a), encode(b))
}

func compareAge(a, b *candidate) int {
	if c := a.export.CreationTimestamp.Compare(b.export.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.cluster.Key, b.cluster.Key); c != 0 {
		return c
	}
	return strings.Compare(string(a.export.UID), string(b.export.UID))
}

// newCandidate validates an export against its Service and, when it is
// valid, extracts what the merge compares.
func newCandidate(namespace, name string, e *Export) *candidate {
	c := &candidate{cluster: e.Cluster, export: e.Export, service: e.Service}
	// The export is judged on its own before anything is read of it or of
	// its Service, so that one over the limits costs no more than a small
	// one, and the rest of the work is bounded by the limits.
	if errs := validateExport(e.Export); len(errs) > 0 {
		c.validReason = ReasonInvalidExport
		c.validMessage = invalidExportMessage(errs)
		return c
	}
	svc := e.Service
	ref := namespace + "/" + name
	rules := e.Export.Rules
	switch {
	case svc == nil:
		c.validReason = ReasonServiceNotFound
		c.validMessage = fmt.Sprintf("Service %s does not exist", ref)
		return c
	case svc.Type == corev1.ServiceTypeExternalName:
		c.validReason = ReasonExternalNameService
		c.validMessage = fmt.Sprintf("Service %s is of type ExternalName, which cannot be exported", ref)
		return c
	case len(rules) == 0:
		c.validReason = ReasonNoRules
		c.validMessage = "the export has no rules, so it exposes no port"
		return c
	}

	ports, missing := exportedPorts(svc, rules, ref)
	if missing != "" {
		c.validReason = ReasonPortNotFound
		c.validMessage = missing
		return c
	}

	if msg := e.Export.IngressConflict; msg != nil {
		c.validReason = ReasonIngressConflict
		// ExportOf cut it already; a ServiceExport made otherwise is
		// bounded all the same.
		c.validMessage = truncate(*msg, maxMessageLength)
		return c
	}

	c.validReason = ReasonValid
	c.validMessage = MessageValid
	c.ports = ports
	c.headless = svc.Headless
	c.serviceAccountName = e.Export.ServiceAccountName
	// "None" is the absence of affinity and the API server's default; it is
	// left empty, as the seed's import shows, so that a defaulted and an
	// undefaulted Service do not conflict.
	if svc.SessionAffinity == corev1.ServiceAffinityClientIP {
		c.affinity = flomesh.ServiceAffinity(svc.SessionAffinity)
		if svc.HasClientIP {
			c.affinityConfig = &flomesh.SessionAffinityConfig{ClientIP: &flomesh.ClientIPConfig{}}
			if svc.HasClientIPTimeout {
				v := svc.ClientIPTimeoutSeconds
				c.affinityConfig.ClientIP.TimeoutSeconds = &v
			}
		}
	}
	return c
}

// validateExport judges the spec of a member's export by the rules and
// limits of the API, which the member's CRD enforces too, unless the member
// runs an older CRD or holds exports stored before it. The metadata is left
// to the member's API server; the namespace and name are the caller's.
func validateExport(e *ServiceExport) field.ErrorList {
	// The spec shares the export's lists rather than copying them, however
	// long they are. SessionSticky, which e lacks, is not validated.
	spec := flomesh.ServiceExportSpec{
		ServiceAccountName: e.ServiceAccountName,
		Rules:              e.Rules,
		LoadBalancer:       e.LoadBalancer,
		PathRewrite:        e.PathRewrite,
		TargetClusters:     e.TargetClusters,
	}
	return validation.ValidateServiceExportSpec(&spec, specPath)
}

// specPath is the path of an export's spec. A path is never changed, only
// extended, so one serves every export.
var specPath = field.NewPath("spec")

// invalidExportMessage says why an export is invalid: its errors as far as
// they fit in a message, each without the value it quotes, which the
// export's owner can read on the export and which may be long.
func invalidExportMessage(errs field.ErrorList) string {
	m := newMessage("; ")
	for _, e := range errs {
		m.addFunc(func() string {
			msg := e.Field + ": " + e.Type.String()
			// Counts and port numbers are short and say what is wrong.
			switch v := e.BadValue.(type) {
			case int, int32, int64:
				msg += fmt.Sprintf(": %d", v)
			}
			if e.Detail != "" {
				msg += ": " + e.Detail
			}
			return msg
		})
	}
	return m.String()
}

// exportedPorts returns the ports the rules expose, sorted by number, each
// with the definitions of the Service's ports of that number; or, when a
// rule names a number the Service lacks, a message saying which.
//
// The Service is a member's and may have any number of ports, so they are
// read once, each looked up among the numbers the rules name, of which
// there are at most validation.MaxExportRules. rules must not be empty.
func exportedPorts(svc *Service, rules []ExportRule, ref string) ([]exportedPort, string) {
	ports := make([]exportedPort, len(rules))
	for i, rule := range rules {
		ports[i] = exportedPort{number: rule.PortNumber, path: rule.Path}
	}
	// Validation made sure that rules naming the same port give the same
	// path, so a port named again is merely redundant.
	slices.SortFunc(ports, func(a, b exportedPort) int { return cmp.Compare(a.number, b.number) })
	ports = slices.CompactFunc(ports, func(a, b exportedPort) bool { return a.number == b.number })
	numbers := make([]int32, len(ports))
	// named has a bit set for each number the rules name, modulo its size:
	// a Service's port whose bit is clear is none of them, and needs no
	// search. It rules out most ports of a large Service.
	var named portSet
	for i := range ports {
		numbers[i] = ports[i].number
		named.add(ports[i].number)
	}
	lowest, highest := numbers[0], numbers[len(numbers)-1]
	for i := range svc.Ports {
		p := &svc.Ports[i]
		if p.Port < lowest || p.Port > highest || !named.mayHave(p.Port) {
			continue
		}
		j, found := slices.BinarySearch(numbers, p.Port)
		if !found {
			continue
		}
		s := portSpec{name: p.Name, protocol: flomesh.Protocol(p.Protocol)}
		if s.protocol == "" {
			// The API's default.
			s.protocol = flomesh.Protocol(corev1.ProtocolTCP)
		}
		s.appProtocol = p.AppProtocol
		ports[j].specs = append(ports[j].specs, s)
	}

	missing := newMessage("; ")
	for i, rule := range rules {
		if j, _ := slices.BinarySearch(numbers, rule.PortNumber); len(ports[j].specs) == 0 {
			missing.addFunc(func() string {
				return fmt.Sprintf("rule %d: port %d is not a port of Service %s", i, rule.PortNumber, ref)
			})
		}
	}
	if !missing.empty() {
		return nil, missing.String()
	}
	for j := range ports {
		slices.SortFunc(ports[j].specs, comparePortSpecs)
	}
	return ports, ""
}

// portSet is a set of port numbers modulo portSetBits: it may say that a
// number it lacks is in it, never that a number in it is not.
type portSet [portSetBits / 64]uint64

// portSetBits is the size of a portSet: enough for validation.MaxExportRules
// numbers to leave most bits clear, and small enough for the stack.
const portSetBits = 1024

func (s *portSet) add(n int32) {
	b := uint32(n) % portSetBits
	s[b/64] |= 1 << (b % 64)
}

func (s *portSet) mayHave(n int32) bool {
	b := uint32(n) % portSetBits
	return s[b/64]&(1<<(b%64)) != 0
}

// offer is one port of one valid export, offered to the merge.
type offer struct {
	c *candidate
	p *exportedPort
}

// resolvedPort is the winning definition of a port number: that of the
// oldest valid export that exposes the number. The exports that define it
// so serve it; those that define it otherwise are losers.
type resolvedPort struct {
	number int32
	specs  []portSpec
	owner  *candidate
	// servers are sorted by cluster key, losers oldest first.
	servers []offer
	losers  []offer
}

// resolution is the outcome of merging the valid exports of a service.
type resolution struct {
	// winner is the oldest valid export, whose type, session affinity and
	// serviceAccountName the import takes; nil when no export is valid.
	winner *candidate
	// ports are sorted by number.
	ports []resolvedPort
	// conflict is the reason and message of the Conflict condition of
	// every valid export, or "" when the exports agree.
	conflictReason  string
	conflictMessage string
}

// resolve merges the valid exports, given oldest first.
//
// Each port number is resolved on its own, by the oldest export exposing
// it, so that an export that adds a port to a service does not conflict
// with older exports that lack it: KEP-1645 merges ports as a union. The
// other properties are the service's as a whole and come from the oldest
// valid export.
//
// A conflict does not stop an export from serving: its endpoints remain for
// every port whose definition matches the resolved one, and are dropped
// only for the ports it defines differently, where a consumer routing by the
// resolved definition (say, TCP) could reach a backend speaking another
// (say, UDP). Differences in type, affinity or serviceAccountName do not
// change where traffic for a port can go, so they drop no endpoints.
func resolve(byAge []*candidate) *resolution {
	r := &resolution{}
	valid := make([]*candidate, 0, len(byAge))
	for _, c := range byAge {
		if c.valid() {
			valid = append(valid, c)
		}
	}
	if len(valid) == 0 {
		return r
	}
	w := valid[0]
	r.winner = w

	// Every port of every valid export, grouped by number by one sort,
	// each group listing its exports oldest first. Merging the ports one by
	// one into a sorted list would be quadratic in the ports of all the
	// exports.
	n := 0
	for _, c := range valid {
		n += len(c.ports)
	}
	offers := make([]offer, 0, n)
	for _, c := range valid {
		for i := range c.ports {
			offers = append(offers, offer{c: c, p: &c.ports[i]})
		}
	}
	slices.SortFunc(offers, func(a, b offer) int {
		if c := cmp.Compare(a.p.number, b.p.number); c != 0 {
			return c
		}
		return cmp.Compare(a.c.ageOrder, b.c.ageOrder)
	})
	for start := 0; start < len(offers); {
		number := offers[start].p.number
		end := start + 1
		for end < len(offers) && offers[end].p.number == number {
			end++
		}
		rp := resolvedPort{number: number, specs: offers[start].p.specs, owner: offers[start].c,
			servers: make([]offer, 0, end-start)}
		for _, o := range offers[start:end] {
			if slices.Equal(o.p.specs, rp.specs) {
				rp.servers = append(rp.servers, o)
			} else {
				rp.losers = append(rp.losers, o)
			}
		}
		slices.SortFunc(rp.servers, func(a, b offer) int { return cmp.Compare(a.c.keyOrder, b.c.keyOrder) })
		r.ports = append(r.ports, rp)
		start = end
	}

	// A conflict is put into words only if the message has room for it:
	// the message lists as many as fit, in the order of conflictOrder.
	conflicts := map[string][]func() string{}
	for _, rp := range r.ports {
		if len(rp.losers) == 0 {
			continue
		}
		conflicts[ReasonPortConflict] = append(conflicts[ReasonPortConflict], func() string {
			others := newList(", ")
			for _, l := range rp.losers {
				others.addFunc(func() string {
					return fmt.Sprintf("%s (%s)", formatSpecs(rp.number, l.p.specs), l.c.cluster.Key)
				})
			}
			return conflictMessage(fmt.Sprintf("port %d", rp.number), formatSpecs(rp.number, rp.specs), rp.owner, others)
		})
	}

	// The lists of the exports that differ from the winner, made only
	// for the properties on which some export does.
	var kinds, affinities, configs, accounts *message
	for _, c := range valid[1:] {
		if c.headless != w.headless {
			kinds = addToList(kinds, func() string { return fmt.Sprintf("%s (%s)", importType(c), c.cluster.Key) })
		}
		if c.affinity != w.affinity {
			affinities = addToList(affinities, func() string { return fmt.Sprintf("%s (%s)", affinityString(c.affinity), c.cluster.Key) })
		} else if !equality.Semantic.DeepEqual(c.affinityConfig, w.affinityConfig) {
			// Compared only under the same affinity: a different affinity
			// is reported once, not again as a different configuration.
			configs = addToList(configs, func() string { return fmt.Sprintf("%s (%s)", affinityConfigString(c.affinityConfig), c.cluster.Key) })
		}
		if c.serviceAccountName != w.serviceAccountName {
			accounts = addToList(accounts, func() string { return fmt.Sprintf("%q (%s)", c.serviceAccountName, c.cluster.Key) })
		}
	}
	if kinds != nil {
		conflicts[ReasonTypeConflict] = []func() string{func() string {
			return conflictMessage("type", string(importType(w)), w, kinds)
		}}
	}
	if affinities != nil {
		conflicts[ReasonSessionAffinityConflict] = []func() string{func() string {
			return conflictMessage("sessionAffinity", affinityString(w.affinity), w, affinities)
		}}
	}
	if configs != nil {
		conflicts[ReasonSessionAffinityConfigConflict] = []func() string{func() string {
			return conflictMessage("sessionAffinityConfig", affinityConfigString(w.affinityConfig), w, configs)
		}}
	}
	if accounts != nil {
		conflicts[ReasonServiceAccountNameConflict] = []func() string{func() string {
			return conflictMessage("serviceAccountName", strconv.Quote(w.serviceAccountName), w, accounts)
		}}
	}

	messages := newMessage("; ")
	for _, reason := range conflictOrder {
		for _, describe := range conflicts[reason] {
			if r.conflictReason == "" {
				r.conflictReason = reason
			}
			messages.addFunc(describe)
		}
	}
	r.conflictMessage = messages.String()
	return r
}

// conflictMessage says which value of a property is used and which are not.
func conflictMessage(property, winning string, owner *candidate, others *message) string {
	return fmt.Sprintf("%s conflicts: using %s of the oldest export (%s) over %s",
		property, winning, owner.cluster.Key, others)
}

// maxMessageLength bounds, give or take the count of what is left out, the
// messages Compute writes into conditions. Every export's conditions are in
// the import, and the Conflict message in every valid export's, so a
// message that grew with the errors or the exports would grow the import
// quadratically; and a member's API server refuses a condition message
// over 32768 bytes.
const maxMessageLength = 1024

// message is a list of parts, joined by a separator, bounded in length:
// the parts that fit, in order, then how many are left out. The first part
// is always given, cut if it is too long on its own. Callers ask whether a
// part fits before they describe it (addFunc), so that what is left out
// costs nothing to describe.
type message struct {
	sep     string
	limit   int
	b       strings.Builder
	n, more int
}

// newMessage starts a message of maxMessageLength.
func newMessage(sep string) *message { return &message{sep: sep, limit: maxMessageLength} }

// newList starts a list that goes within a message, such as the exports
// that lose a conflict, in half of one, so that the message still says how
// many of the list it leaves out.
func newList(sep string) *message { return &message{sep: sep, limit: maxMessageLength / 2} }

// fits reports whether another part may yet fit.
func (m *message) fits() bool {
	return m.more == 0 && (m.n == 0 || m.b.Len()+len(m.sep) < m.limit)
}

// add appends part, or counts it as left out when it does not fit.
func (m *message) add(part string) {
	switch {
	case m.n == 0:
		m.b.WriteString(truncate(part, m.limit))
	case m.more == 0 && m.b.Len()+len(m.sep)+len(part) <= m.limit:
		m.b.WriteString(m.sep)
		m.b.WriteString(part)
	default:
		m.more++
		return
	}
	m.n++
}

// addFunc appends the part describe returns, calling it only when the
// part may fit.
func (m *message) addFunc(describe func() string) {
	if !m.fits() {
		m.more++
		return
	}
	m.add(describe())
}

// empty reports whether nothing was added, fitting or not.
func (m *message) empty() bool { return m.n == 0 && m.more == 0 }

func (m *message) String() string {
	if m.more == 0 {
		return m.b.String()
	}
	return fmt.Sprintf("%s%sand %d more", m.b.String(), m.sep, m.more)
}

// addToList adds the part describe returns to list, which it starts if
// list is nil, and returns the list.
func addToList(list *message, describe func() string) *message {
	if list == nil {
		list = newList(", ")
	}
	list.addFunc(describe)
	return list
}

// truncate cuts s to at most n bytes, at a character boundary, marking the
// cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func importType(c *candidate) flomesh.ServiceImportType {
	if c.headless {
		return flomesh.Headless
	}
	return flomesh.ClusterSetIP
}

func affinityString(a flomesh.ServiceAffinity) string {
	if a == "" {
		return string(corev1.ServiceAffinityNone)
	}
	return string(a)
}

func affinityConfigString(cfg *flomesh.SessionAffinityConfig) string {
	if cfg == nil || cfg.ClientIP == nil {
		return "none"
	}
	if cfg.ClientIP.TimeoutSeconds == nil {
		return "clientIP.timeoutSeconds unset"
	}
	return fmt.Sprintf("clientIP.timeoutSeconds=%d", *cfg.ClientIP.TimeoutSeconds)
}

// servicePorts builds the import's ports, sorted by number then protocol,
// each with the endpoints, sorted by cluster key, of the valid exports that
// define the port as resolved. The list is never nil: the field is required
// and serializes as [] when nothing is exported.
func (r *resolution) servicePorts() []flomesh.ServicePort {
	n := 0
	for _, rp := range r.ports {
		n += len(rp.specs)
	}
	ports := make([]flomesh.ServicePort, 0, n)
	for _, rp := range r.ports {
		endpoints := make([]flomesh.Endpoint, len(rp.servers))
		for i, s := range rp.servers {
			c := s.c
			endpoints[i] = flomesh.Endpoint{
				ClusterKey: c.cluster.Key,
				Target: flomesh.Target{
					Host: c.cluster.GatewayHost,
					IP:   c.cluster.GatewayIP,
					Port: c.cluster.GatewayPort,
					Path: s.p.path,
				},
			}
		}
		for i, s := range rp.specs {
			sp := flomesh.ServicePort{
				Name:      s.name,
				Protocol:  s.protocol,
				Port:      rp.number,
				Endpoints: endpoints,
			}
			if i > 0 {
				// Ports of one number must not share a backing array, or
				// a caller editing one would edit the other.
				sp.Endpoints = slices.Clone(endpoints)
			}
			if s.appProtocol != "" {
				ap := s.appProtocol
				sp.AppProtocol = &ap
			}
			ports = append(ports, sp)
		}
	}
	return ports
}

// status lists the clusters serving the import and every export, both
// sorted by cluster key. An export's conditions are listed only when it is
// not valid or is in conflict (see ExportConditions).
func (r *resolution) status(byKey []*candidate) flomesh.ServiceImportStatus {
	var st flomesh.ServiceImportStatus
	st.Exports = make([]flomesh.ExportStatus, 0, len(byKey))
	for _, c := range byKey {
		es := flomesh.ExportStatus{Cluster: c.cluster.Key, ObservedGeneration: c.export.Generation,
			TargetClusters: slices.Clone(c.export.TargetClusters)}
		switch {
		case !c.valid():
			// Conflicts are among valid exports only. The condition is
			// still reported, False, so that a Conflict=True left from
			// when the export was valid is cleared.
			es.Conditions = []metav1.Condition{
				newCondition(ConditionValid, metav1.ConditionFalse, c.validReason, c.validMessage, c),
				newCondition(ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts,
					"the export is not valid, so it takes no part in conflict resolution", c),
			}
		case r.conflictReason != "":
			es.Conditions = []metav1.Condition{
				newCondition(ConditionValid, metav1.ConditionTrue, c.validReason, c.validMessage, c),
				newCondition(ConditionConflict, metav1.ConditionTrue, r.conflictReason, r.conflictMessage, c),
			}
		}
		st.Exports = append(st.Exports, es)
		if c.valid() {
			st.Clusters = append(st.Clusters, flomesh.SourceStatus{
				Cluster:   c.cluster.Key,
				Addresses: c.cluster.addresses(),
			})
		}
	}
	return st
}

// addresses returns where the cluster serves its exports: Addresses when
// the caller set them, else as GatewayAddresses computes them.
func (c *Cluster) addresses() []string {
	if c.Addresses != nil {
		return c.Addresses
	}
	return GatewayAddresses(*c)
}

// GatewayAddresses returns where a cluster serves its exports: its gateway
// host and port, and also the resolved IP and port when the host is a name.
func GatewayAddresses(c Cluster) []string {
	port := strconv.Itoa(int(c.GatewayPort))
	var addrs []string
	if c.GatewayHost != "" {
		addrs = append(addrs, net.JoinHostPort(c.GatewayHost, port))
	}
	if c.GatewayIP != "" && c.GatewayIP != c.GatewayHost {
		addrs = append(addrs, net.JoinHostPort(c.GatewayIP, port))
	}
	return addrs
}
