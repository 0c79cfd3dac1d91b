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

package protection

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/pkg/routing"
)

// The Routed condition of a policy, and status.consumers, say where each
// member's requests for the service go. They are computed by pkg/routing,
// the code fedmesh-gateway runs, from what the control plane sees: the
// Clusters' Ready conditions as the health of each cluster, and the
// ServiceImport. The control plane sees no member's Pods, so a member's own
// instance of the service is its own export (routing.ExportedBackends): a
// member that exports the service serves its own requests, and one that
// does not has no local endpoints. kubectl fedmesh status service --from reads a member's real
// endpoints when it is given access to the member.
const (
	// ConditionRouted is True when every member has a route to every port
	// of the service, False when some member has none, and Unknown when the
	// routes are too many to report.
	ConditionRouted = "Routed"
	// ReasonEveryConsumerRouted: every member has a route.
	ReasonEveryConsumerRouted = "EveryConsumerRouted"
	// ReasonConsumersWithoutRoute: some members have no route; the message
	// names them.
	ReasonConsumersWithoutRoute = "ConsumersWithoutRoute"
	// ReasonNotExported: no member exports the service, so the control
	// plane knows none of its ports.
	ReasonNotExported = "NotExported"
	// ReasonNoMembers: no Cluster is registered.
	ReasonNoMembers = "NoMembers"
	// ReasonTooManyRoutes: the federation or the service is too large for
	// the routes to be listed in the status.
	ReasonTooManyRoutes = "TooManyRoutes"
)

// routeInput is what consumerRoutes decides from.
type routeInput struct {
	// Namespace and Name of the policy and its service.
	Namespace, Name string
	Policy          *v1alpha1.GlobalTrafficPolicySpec
	// Clusters are every registered Cluster, live or being deleted.
	Clusters []*v1alpha1.Cluster
	// Import is the service's import, nil when no member exports it.
	Import *v1alpha1.ServiceImport
}

// consumerRoutes returns the route of every live member to every port of
// the service, sorted by member key then port, and the Routed condition
// (without its transition time). The routes are left out, and the
// condition Unknown, when the federation has more than
// validation.MaxReportedMembers members or the routes would be more than
// validation.MaxConsumerRoutes.
func consumerRoutes(in routeInput) ([]v1alpha1.ConsumerRoute, metav1.Condition) {
	cond := metav1.Condition{Type: ConditionRouted}
	ref := in.Namespace + "/" + in.Name

	health := map[string]routing.Health{}
	var consumers []string
	for _, c := range in.Clusters {
		key := KeyOf(c)
		h := routing.HealthOf(c)
		// Only fedmesh's own reason: the message of a Ready condition
		// may quote the member, and status never echoes what a member
		// said.
		h.Message = ""
		health[key] = h
		if c.DeletionTimestamp != nil {
			continue
		}
		consumers = append(consumers, key)
	}
	slices.Sort(consumers)
	consumers = slices.Compact(consumers)

	var ports []int32
	if in.Import != nil {
		for _, p := range in.Import.Spec.Ports {
			ports = append(ports, p.Port)
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)

	switch {
	case len(consumers) == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, ReasonNoMembers, "no member is registered"
		return nil, cond
	case len(ports) == 0:
		// An import without ports is one whose every export is invalid.
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNotExported
		what := "exports"
		if in.Import != nil {
			what = "validly exports"
		}
		cond.Message = fmt.Sprintf("no member %s %s: a member can reach only its own instance of the service, which the control plane does not see", what, ref)
		return nil, cond
	case len(consumers) > validation.MaxReportedMembers || len(consumers)*len(ports) > validation.MaxConsumerRoutes:
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonTooManyRoutes
		cond.Message = fmt.Sprintf("%d members and %d port(s) make %d routes; the status lists them for at most %d members and %d routes: see kubectl fedmesh status service %s --from CLUSTER",
			len(consumers), len(ports), len(consumers)*len(ports), validation.MaxReportedMembers, validation.MaxConsumerRoutes, ref)
		return nil, cond
	}

	var routes []v1alpha1.ConsumerRoute
	var unrouted []string
	for _, consumer := range consumers {
		for _, port := range ports {
			r := routing.Compute(routing.Input{
				Consumer:      consumer,
				Port:          port,
				LocalBackends: routing.ExportedBackends(in.Import, consumer, port),
				Import:        in.Import,
				Policy:        in.Policy,
				Health:        health,
			})
			routes = append(routes, routeStatus(consumer, port, r))
			if len(r.Tiers) == 0 {
				unrouted = append(unrouted, fmt.Sprintf("%s (port %d)", consumer, port))
			}
		}
	}
	if len(unrouted) == 0 {
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonEveryConsumerRouted
		cond.Message = "every member has a route to every port of the service"
	} else {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonConsumersWithoutRoute
		cond.Message = "members without a route: " + ListNames(unrouted)
	}
	return routes, cond
}

// routeStatus is a route as status.consumers tells it: the clusters of each
// tier with their weights, and the clusters that are out with their
// reasons, bounded as ListNames bounds a list.
func routeStatus(consumer string, port int32, r routing.Route) v1alpha1.ConsumerRoute {
	out := v1alpha1.ConsumerRoute{Cluster: consumer, Port: port}
	for _, t := range r.Tiers {
		tier := v1alpha1.RouteTier{Destinations: make([]v1alpha1.RouteDestination, 0, len(t))}
		for _, d := range t {
			tier.Destinations = append(tier.Destinations, v1alpha1.RouteDestination{Cluster: d.Cluster, Weight: d.Weight})
		}
		// Routing orders a tier with the consumer first; the status
		// keeps that order, so a tier reads "local, then the others".
		out.Tiers = append(out.Tiers, tier)
	}
	var excluded []string
	for _, d := range r.Decisions {
		if !d.In() {
			excluded = append(excluded, d.Cluster+": "+string(d.Reason))
		}
	}
	// Decisions are sorted by cluster; the reasons are routing's own
	// words, never a member's.
	if len(excluded) > MaxListed {
		excluded = append(excluded[:MaxListed:MaxListed], fmt.Sprintf("and %d more", len(excluded)-MaxListed))
	}
	if len(excluded) > 0 {
		out.Message = "out: " + strings.Join(excluded, "; ")
	}
	return out
}
