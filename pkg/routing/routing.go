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

// Package routing decides where a consumer's request for a federated
// service goes: the meaning of a GlobalTrafficPolicy.
//
// It is pure, like pkg/imports: it knows no clients, servers or clocks.
// fedmesh-gateway runs it for every change of its member's objects, and
// kubectl fedmesh and fedmesh-apiserver run it to explain a route, so
// what a user is told is what the data plane does.
//
// Compute takes the consumer cluster, its own instance of the service (the
// ready endpoints of its local Service, for one port), the ServiceImport,
// the policy and what is known of each cluster's health, and returns a
// Route: an ordered list of tiers, each a set of weighted destinations.
// A request goes to the first tier that has a usable backend (Select),
// and within it to a destination chosen by weight (Pick). Every cluster
// that Compute considered gets a Decision that says why it is in or out.
//
// The rules, those of the Flomesh walkthrough:
//
//   - Locality, and no policy at all: the local endpoints only. A consumer
//     without ready local endpoints has no route.
//   - FailOver: the local endpoints first; when none is usable, the
//     targets share the load by weight, in a second tier. A FailOver
//     policy without targets (the API refuses one, but a stored object may
//     predate that) routes as Locality, and says so.
//   - ActiveActive: the local endpoints and the targets in one tier, by
//     weight. Without targets, every cluster that exports the service to
//     the consumer is a target.
//
// The edge cases:
//
//   - A weight that is not set is DefaultWeight. The local cluster weighs
//     its own target's weight when the policy lists it, else DefaultWeight.
//     A weight of zero takes the cluster out (ZeroWeight), as a drained
//     cluster; a negative one (which validation refuses) counts as zero.
//   - A target that does not export the service, or not this port, or not
//     to the consumer, is out (NotExported). One whose export is invalid or
//     withdrawn for a conflict is out as InvalidExport, with the reason.
//   - A cluster known not to be Ready whose endpoints the import no longer
//     holds is out (NotReady). One whose endpoints it still holds is in:
//     fedmesh-apiserver keeps a member's endpoints for a grace after it
//     stops being Ready (the policy's unavailableGraceSeconds), and the
//     gateways route by the import, so a route that left it out would
//     tell the user something the data plane does not do. Its decision
//     says it is in only for the grace. A cluster whose health is not
//     given is taken as Ready: a member's gateway does not see Clusters.
//   - An exporting cluster the policy does not list is out (NotATarget);
//     under Locality every other cluster is.
//   - The consumer is never a remote destination of itself: it serves
//     through its local endpoints (Local), or not at all (NoLocalEndpoints).
//
// Passive health is not an input: it changes per request, and a Route is
// computed per change of the objects. Select takes it as a predicate.
package routing

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

// DefaultWeight is the weight of a cluster whose weight is not set.
const DefaultWeight int32 = 100

// Reason says why a cluster is in or out of a route.
type Reason string

const (
	// Local: the consumer serves through its own ready endpoints.
	Local Reason = "Local"
	// NoLocalEndpoints: the consumer has no ready endpoints of the service.
	NoLocalEndpoints Reason = "NoLocalEndpoints"
	// Target: the cluster is a target of the policy and exports the service.
	Target Reason = "Target"
	// NotATarget: the cluster exports the service but the policy does not
	// route to it.
	NotATarget Reason = "NotATarget"
	// NotExported: the policy lists the cluster, but it does not export the
	// service's port to the consumer.
	NotExported Reason = "NotExported"
	// InvalidExport: the cluster's export is not valid, or withdrawn.
	InvalidExport Reason = "InvalidExport"
	// NotReady: the cluster is known not to be Ready.
	NotReady Reason = "NotReady"
	// ZeroWeight: the policy gives the cluster a weight of zero.
	ZeroWeight Reason = "ZeroWeight"
)

// Backend is one address a request can be sent to.
type Backend struct {
	// Host and Port are where to connect: a local endpoint's address, or
	// an exporting cluster's gateway.
	Host string
	Port int32
	// Path is the path prefix at the exporting cluster's gateway that
	// serves the service; empty for a local endpoint.
	Path string
}

// Address is Host:Port, bracketing an IPv6 host.
func (b Backend) Address() string {
	if strings.Contains(b.Host, ":") {
		return fmt.Sprintf("[%s]:%d", b.Host, b.Port)
	}
	return fmt.Sprintf("%s:%d", b.Host, b.Port)
}

// Destination is one cluster of a tier, with its weight and backends.
type Destination struct {
	// Cluster is the key of the serving cluster.
	Cluster string
	// Local is true for the consumer's own endpoints.
	Local bool
	// Weight is the cluster's share of its tier, greater than zero.
	Weight int32
	// Backends are the cluster's addresses: its ready endpoints when
	// Local, else its gateway targets.
	Backends []Backend
}

// Tier is a set of destinations that share load by weight.
type Tier []Destination

// Decision says why a cluster is in a route or out of it.
type Decision struct {
	Cluster string
	// Tier is the index of the cluster's tier, or -1 when it is out.
	Tier    int
	Reason  Reason
	Message string
}

// In tells whether the cluster is in the route.
func (d Decision) In() bool { return d.Tier >= 0 }

// Route is where a consumer's requests for one port of a service go.
type Route struct {
	// LbType is the policy's type, Locality when there is no policy.
	LbType v1alpha1.LoadBalancerType
	// Tiers in order of preference; never an empty tier.
	Tiers []Tier
	// Decisions, one per cluster considered, ordered by cluster key.
	Decisions []Decision
}

// Health is what is known of a cluster's health.
type Health struct {
	Ready bool
	// Reason and Message of the cluster's Ready condition, when it is not.
	Reason, Message string
}

// Input is what Compute decides from. Compute neither keeps nor changes it.
type Input struct {
	// Consumer is the key of the cluster the request starts in.
	Consumer string
	// Port is the service port the request is for.
	Port int32
	// LocalBackends are the consumer's own ready endpoints for Port; none
	// when it has no such Service, or no ready endpoint.
	LocalBackends []Backend
	// Import is the service's ServiceImport, as the control plane computes
	// it or as fedmesh-syncer writes it into the consumer; nil when no
	// other cluster exports the service.
	Import *v1alpha1.ServiceImport
	// Policy is the service's GlobalTrafficPolicy; nil is Locality.
	Policy *v1alpha1.GlobalTrafficPolicySpec
	// Health of clusters by key; a cluster without an entry is Ready.
	Health map[string]Health
}

// Compute returns the route of in.
func Compute(in Input) Route {
	lbType := v1alpha1.LocalityLbType
	var targets []v1alpha1.TrafficTarget
	if in.Policy != nil {
		if in.Policy.LbType != "" {
			lbType = in.Policy.LbType
		}
		targets = in.Policy.Targets
	}
	r := Route{LbType: lbType}
	decided := map[string]bool{}
	decide := func(cluster string, tier int, reason Reason, format string, args ...any) {
		if decided[cluster] {
			return
		}
		decided[cluster] = true
		r.Decisions = append(r.Decisions, Decision{Cluster: cluster, Tier: tier, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	weights := map[string]int32{}
	listed := map[string]bool{}
	for _, t := range targets {
		if listed[t.ClusterKey] {
			continue // the first mention counts, as validation refuses duplicates
		}
		listed[t.ClusterKey] = true
		weights[t.ClusterKey] = weightOf(t.Weight)
	}
	if lbType == v1alpha1.FailOverLbType && len(targets) == 0 {
		lbType = v1alpha1.LocalityLbType
	}

	// The consumer's own endpoints.
	var local *Destination
	switch w, ok := weights[in.Consumer]; {
	case len(in.LocalBackends) == 0:
		decide(in.Consumer, -1, NoLocalEndpoints, "%s has no ready endpoint of the service for port %d", in.Consumer, in.Port)
	case ok && w <= 0:
		decide(in.Consumer, -1, ZeroWeight, "the policy gives %s a weight of 0", in.Consumer)
	default:
		if !ok {
			w = DefaultWeight
		}
		local = &Destination{Cluster: in.Consumer, Local: true, Weight: w, Backends: slices.Clone(in.LocalBackends)}
		decide(in.Consumer, 0, Local, "%s serves from %d ready local endpoint(s)", in.Consumer, len(in.LocalBackends))
	}

	// The other clusters' exports of the port, as the consumer sees them.
	exported := map[string][]Backend{}
	var exporters []string
	if in.Import != nil {
		audience := imports.Audiences(in.Import)
		for _, p := range in.Import.Spec.Ports {
			if p.Port != in.Port {
				continue
			}
			for _, e := range imports.VisibleTo(in.Consumer, audience, p.Endpoints) {
				if _, seen := exported[e.ClusterKey]; !seen {
					exporters = append(exporters, e.ClusterKey)
				}
				host := e.Target.Host
				if host == "" {
					host = e.Target.IP
				}
				exported[e.ClusterKey] = append(exported[e.ClusterKey], Backend{Host: host, Port: e.Target.Port, Path: e.Target.Path})
			}
		}
	}
	slices.Sort(exporters)
	invalid := invalidExports(in.Import)

	// The remote clusters the policy names: its targets, or, for
	// ActiveActive without targets, every exporter.
	var remote []string
	switch lbType {
	case v1alpha1.FailOverLbType, v1alpha1.ActiveActiveLbType:
		for _, t := range targets {
			remote = append(remote, t.ClusterKey)
		}
		if len(targets) == 0 {
			remote = exporters
		}
	}
	var tier Tier
	inGrace := map[string]string{}
	for _, key := range remote {
		if key == in.Consumer {
			continue // decided above, as Local or not
		}
		w, ok := weights[key]
		if !ok {
			w = DefaultWeight
		}
		backends, exports := exported[key]
		h, known := in.Health[key]
		switch {
		case known && !h.Ready && !exports:
			decide(key, -1, NotReady, "%s is not Ready%s", key, because(h))
		case !exports && invalid[key] != "":
			decide(key, -1, InvalidExport, "the export of %s is not served: %s", key, invalid[key])
		case !exports:
			decide(key, -1, NotExported, "%s does not export port %d of the service to %s", key, in.Port, in.Consumer)
		case w <= 0:
			decide(key, -1, ZeroWeight, "the policy gives %s a weight of 0", key)
		default:
			tier = append(tier, Destination{Cluster: key, Weight: w, Backends: slices.Clone(backends)})
			if known && !h.Ready {
				inGrace[key] = because(h)
			}
		}
	}
	slices.SortFunc(tier, func(a, b Destination) int { return cmp.Compare(a.Cluster, b.Cluster) })

	switch lbType {
	case v1alpha1.FailOverLbType:
		if local != nil {
			r.Tiers = append(r.Tiers, Tier{*local})
		}
		if len(tier) > 0 {
			r.Tiers = append(r.Tiers, tier)
		}
	case v1alpha1.ActiveActiveLbType:
		if local != nil {
			tier = append(Tier{*local}, tier...)
		}
		if len(tier) > 0 {
			r.Tiers = append(r.Tiers, tier)
		}
	default:
		if local != nil {
			r.Tiers = append(r.Tiers, Tier{*local})
		}
	}
	for i, t := range r.Tiers {
		for _, d := range t {
			switch why, grace := inGrace[d.Cluster]; {
			case d.Local:
			case grace:
				decide(d.Cluster, i, Target, "%s is a target of the %s policy and exports the service; it is not Ready%s, and is served until its grace runs out", d.Cluster, lbType, why)
			default:
				decide(d.Cluster, i, Target, "%s is a target of the %s policy and exports the service", d.Cluster, lbType)
			}
		}
	}

	// Whatever else exports the service is out, and says why.
	for _, key := range exporters {
		switch {
		case r.LbType == v1alpha1.FailOverLbType && lbType == v1alpha1.LocalityLbType:
			decide(key, -1, NotATarget, "%s exports the service, but the FailOver policy has no targets, so it routes as Locality", key)
		case lbType == v1alpha1.LocalityLbType:
			decide(key, -1, NotATarget, "%s exports the service, but the %s policy routes to local endpoints only", key, r.LbType)
		default:
			decide(key, -1, NotATarget, "%s exports the service, but the policy does not list it", key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(invalid)) {
		decide(key, -1, InvalidExport, "the export of %s is not served: %s", key, invalid[key])
	}
	slices.SortFunc(r.Decisions, func(a, b Decision) int { return cmp.Compare(a.Cluster, b.Cluster) })
	return r
}

// Select returns the first tier that has a usable backend, with only its
// usable backends, and that tier's index; -1 and nil when no tier has one.
// usable is the caller's passive health: it is false for a backend that
// has lately refused connections or failed.
func (r Route) Select(usable func(cluster string, b Backend) bool) (int, Tier) {
	for i, t := range r.Tiers {
		var out Tier
		for _, d := range t {
			var ok []Backend
			for _, b := range d.Backends {
				if usable(d.Cluster, b) {
					ok = append(ok, b)
				}
			}
			if len(ok) > 0 {
				d.Backends = ok
				out = append(out, d)
			}
		}
		if len(out) > 0 {
			return i, out
		}
	}
	return -1, nil
}

// Pick returns the destination of t that the number n, taken uniformly at
// random by the caller, falls on when the weights are laid end to end. t
// must not be empty.
func (t Tier) Pick(n uint64) Destination {
	var total uint64
	for _, d := range t {
		total += uint64(d.Weight)
	}
	n %= total
	for _, d := range t {
		if n < uint64(d.Weight) {
			return d
		}
		n -= uint64(d.Weight)
	}
	return t[len(t)-1]
}

// Explain writes the route for people: its tiers, then each cluster
// considered and why it is in or out. It is the body of the gateway's 503
// and the text of kubectl fedmesh status service.
func (r Route) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy: %s\n", r.LbType)
	if len(r.Tiers) == 0 {
		b.WriteString("no route: no cluster can serve this consumer\n")
	}
	for i, t := range r.Tiers {
		parts := make([]string, 0, len(t))
		for _, d := range t {
			parts = append(parts, fmt.Sprintf("%s (weight %d, %d backend(s))", d.Cluster, d.Weight, len(d.Backends)))
		}
		fmt.Fprintf(&b, "tier %d: %s\n", i, strings.Join(parts, ", "))
	}
	for _, d := range r.Decisions {
		state := "out"
		if d.In() {
			state = fmt.Sprintf("in tier %d", d.Tier)
		}
		fmt.Fprintf(&b, "  %s: %s, %s: %s\n", d.Cluster, state, d.Reason, d.Message)
	}
	return b.String()
}

func weightOf(w *int32) int32 {
	if w == nil {
		return DefaultWeight
	}
	return max(*w, 0)
}

func because(h Health) string {
	switch {
	case h.Reason != "" && h.Message != "":
		return fmt.Sprintf(" (%s: %s)", h.Reason, h.Message)
	case h.Reason != "":
		return fmt.Sprintf(" (%s)", h.Reason)
	}
	return ""
}

// invalidExports maps each cluster whose export the import reports as not
// Valid to that condition's reason and message.
func invalidExports(imp *v1alpha1.ServiceImport) map[string]string {
	out := map[string]string{}
	if imp == nil {
		return out
	}
	for _, es := range imp.Status.Exports {
		if c := meta.FindStatusCondition(es.Conditions, imports.ConditionValid); c != nil && c.Status != "True" {
			out[es.Cluster] = c.Reason + ": " + c.Message
		}
	}
	return out
}
