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
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

const (
	c1 = "default/default/default/cluster-1"
	c2 = "default/default/default/cluster-2"
	c3 = "default/default/default/cluster-3"
)

// member is a registered Cluster of the default region, zone and group.
func member(name string, status metav1.ConditionStatus, reason string) *v1alpha1.Cluster {
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Region: "default", Zone: "default", Group: "default"}}
	if status != "" {
		c.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: reason, Message: "\x1b]0;said the member"}}
	}
	return c
}

func walkthroughMembers() []*v1alpha1.Cluster {
	return []*v1alpha1.Cluster{member("cluster-3", "True", "Connected"), member("cluster-1", "True", "Connected"), member("cluster-2", "True", "Connected")}
}

// importOf returns the v1alpha1 import of httpbin/httpbin that the clusters
// of keys export on the ports given (8080 when none).
func importOf(keys []string, ports ...int32) *v1alpha1.ServiceImport {
	if len(ports) == 0 {
		ports = []int32{8080}
	}
	si := &v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}}
	for _, port := range ports {
		p := v1alpha1.ServicePort{Port: port, Protocol: "TCP"}
		for i, k := range keys {
			p.Endpoints = append(p.Endpoints, v1alpha1.Endpoint{ClusterKey: k,
				Target: v1alpha1.Target{Host: fmt.Sprintf("10.0.0.%d", i+1), Port: 80, Path: "/" + k}})
		}
		si.Spec.Ports = append(si.Spec.Ports, p)
	}
	for _, k := range keys {
		si.Status.Clusters = append(si.Status.Clusters, v1alpha1.SourceStatus{Cluster: k})
		si.Status.Exports = append(si.Status.Exports, v1alpha1.ExportStatus{Cluster: k})
	}
	return si
}

func policyOf(lb v1alpha1.LoadBalancerType, targets ...v1alpha1.TrafficTarget) *v1alpha1.GlobalTrafficPolicySpec {
	return &v1alpha1.GlobalTrafficPolicySpec{LbType: lb, Targets: targets}
}

func target(key string, weight ...int32) v1alpha1.TrafficTarget {
	t := v1alpha1.TrafficTarget{ClusterKey: key}
	if len(weight) > 0 {
		t.Weight = ptr.To(weight[0])
	}
	return t
}

func tier(dests ...v1alpha1.RouteDestination) v1alpha1.RouteTier {
	return v1alpha1.RouteTier{Destinations: dests}
}

func dest(key string, weight int32) v1alpha1.RouteDestination {
	return v1alpha1.RouteDestination{Cluster: key, Weight: weight}
}

// TestConsumerRoutes follows the Flomesh walkthrough, as the control plane
// sees it, then the edge cases.
func TestConsumerRoutes(t *testing.T) {
	failover13 := policyOf(v1alpha1.FailOverLbType, target(c1), target(c3))
	for _, tc := range []struct {
		name       string
		in         routeInput
		want       []v1alpha1.ConsumerRoute
		wantStatus metav1.ConditionStatus
		wantReason string
		// wantMessage is contained in the condition's message.
		wantMessage string
	}{
		{
			name: "no policy: cluster-2, which does not export httpbin, has no route",
			in:   routeInput{Clusters: walkthroughMembers(), Import: importOf([]string{c1, c3})},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100))}, Message: "out: " + c3 + ": NotATarget"},
				{Cluster: c2, Port: 8080, Message: "out: " + c1 + ": NotATarget; " + c2 + ": NoLocalEndpoints; " + c3 + ": NotATarget"},
				{Cluster: c3, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100))}, Message: "out: " + c1 + ": NotATarget"},
			},
			wantStatus: metav1.ConditionFalse, wantReason: ReasonConsumersWithoutRoute,
			wantMessage: "members without a route: " + c2 + " (port 8080)",
		},
		{
			name: "FailOver to cluster-1 and cluster-3: cluster-2 is served by both",
			in:   routeInput{Clusters: walkthroughMembers(), Import: importOf([]string{c1, c3}), Policy: failover13},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100)), tier(dest(c3, 100))}},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100), dest(c3, 100))}, Message: "out: " + c2 + ": NoLocalEndpoints"},
				{Cluster: c3, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100)), tier(dest(c1, 100))}},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "FailOver, httpbin in cluster-2 too: cluster-2 serves itself first",
			in:   routeInput{Clusters: walkthroughMembers(), Import: importOf([]string{c1, c2, c3}), Policy: failover13},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100)), tier(dest(c3, 100))}, Message: "out: " + c2 + ": NotATarget"},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c2, 100)), tier(dest(c1, 100), dest(c3, 100))}},
				{Cluster: c3, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100)), tier(dest(c1, 100))}, Message: "out: " + c2 + ": NotATarget"},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "ActiveActive with weights: one tier, the consumer first; a weight of 0 drains",
			in: routeInput{Clusters: walkthroughMembers(), Import: importOf([]string{c1, c2, c3}),
				Policy: policyOf(v1alpha1.ActiveActiveLbType, target(c1, 50), target(c2), target(c3, 0))},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 50), dest(c2, 100))}, Message: "out: " + c3 + ": ZeroWeight"},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c2, 100), dest(c1, 50))}, Message: "out: " + c3 + ": ZeroWeight"},
				{Cluster: c3, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 50), dest(c2, 100))}, Message: "out: " + c3 + ": ZeroWeight"},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "a target not Ready and withdrawn is out with fedmesh's reason, never the member's message; one being deleted is no consumer",
			in: routeInput{
				Clusters: []*v1alpha1.Cluster{member("cluster-1", "False", "Unreachable"), member("cluster-2", "", ""),
					deleting(member("cluster-3", "True", "Connected"))},
				Import: importOf([]string{c3}), Policy: failover13,
			},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100))}, Message: "out: " + c1 + ": NoLocalEndpoints"},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100))}, Message: "out: " + c1 + ": NotReady; " + c2 + ": NoLocalEndpoints"},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "a target not Ready in its grace is routed to, as the gateways do",
			in: routeInput{
				Clusters: []*v1alpha1.Cluster{member("cluster-1", "False", "Unreachable"), member("cluster-2", "", "")},
				Import:   importOf([]string{c1}), Policy: failover13,
			},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100))}, Message: "out: " + c3 + ": NotExported"},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100))}, Message: "out: " + c2 + ": NoLocalEndpoints; " + c3 + ": NotExported"},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "an export for some clusters only is not exported to the others",
			in: routeInput{Clusters: walkthroughMembers(), Policy: failover13, Import: func() *v1alpha1.ServiceImport {
				si := importOf([]string{c1, c3})
				si.Status.Exports[1].TargetClusters = []string{c1}
				return si
			}()},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100)), tier(dest(c3, 100))}},
				{Cluster: c2, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100))}, Message: "out: " + c2 + ": NoLocalEndpoints; " + c3 + ": NotExported"},
				{Cluster: c3, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c3, 100)), tier(dest(c1, 100))}},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name: "ports are routed one by one, a port number once whatever its protocols",
			in: routeInput{Clusters: walkthroughMembers()[1:2], Policy: failover13, Import: func() *v1alpha1.ServiceImport {
				si := importOf([]string{c1, c3}, 9090, 8080)
				si.Spec.Ports = append(si.Spec.Ports, v1alpha1.ServicePort{Port: 8080, Protocol: "UDP"})
				return si
			}()},
			want: []v1alpha1.ConsumerRoute{
				{Cluster: c1, Port: 8080, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100)), tier(dest(c3, 100))}},
				{Cluster: c1, Port: 9090, Tiers: []v1alpha1.RouteTier{tier(dest(c1, 100)), tier(dest(c3, 100))}},
			},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEveryConsumerRouted,
		},
		{
			name:       "no import: no port is known",
			in:         routeInput{Clusters: walkthroughMembers(), Policy: failover13},
			wantStatus: metav1.ConditionFalse, wantReason: ReasonNotExported,
			wantMessage: "no member exports httpbin/httpbin",
		},
		{
			name: "an import without ports: every export is invalid",
			in: routeInput{Clusters: walkthroughMembers(), Policy: failover13, Import: func() *v1alpha1.ServiceImport {
				si := importOf(nil)
				si.Spec.Ports = nil
				si.Status.Exports = []v1alpha1.ExportStatus{{Cluster: c1, Conditions: []metav1.Condition{{Type: imports.ConditionValid, Status: "False", Reason: "ServiceNotFound"}}}}
				return si
			}()},
			wantStatus: metav1.ConditionFalse, wantReason: ReasonNotExported,
			wantMessage: "no member validly exports httpbin/httpbin",
		},
		{
			name:       "no member",
			in:         routeInput{Import: importOf([]string{c1})},
			wantStatus: metav1.ConditionUnknown, wantReason: ReasonNoMembers,
		},
		{
			name:       "more members than reported",
			in:         routeInput{Clusters: readyMembers(validation.MaxReportedMembers + 1), Import: importOf([]string{c1})},
			wantStatus: metav1.ConditionUnknown, wantReason: ReasonTooManyRoutes,
			wantMessage: "17 members and 1 port(s) make 17 routes; the status lists them for at most 16 members and 32 routes: see kubectl fedmesh status service httpbin/httpbin --from CLUSTER",
		},
		{
			name:       "more routes than reported",
			in:         routeInput{Clusters: readyMembers(validation.MaxReportedMembers), Import: importOf([]string{c1}, 80, 443, 8080)},
			wantStatus: metav1.ConditionUnknown, wantReason: ReasonTooManyRoutes,
			wantMessage: "16 members and 3 port(s) make 48 routes",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Namespace, tc.in.Name = "httpbin", "httpbin"
			got, cond := consumerRoutes(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, ConditionRouted, cond.Type)
			assert.Equal(t, tc.wantStatus, cond.Status)
			assert.Equal(t, tc.wantReason, cond.Reason)
			assert.Contains(t, cond.Message, tc.wantMessage)
			assert.NotContains(t, cond.Message+fmt.Sprint(got), "said the member", "no member's words")
			for _, r := range got {
				assert.LessOrEqual(t, len(r.Message), validation.MaxRouteMessageLength)
			}
		})
	}
}

// readyMembers returns n Ready Clusters.
func readyMembers(n int) []*v1alpha1.Cluster {
	out := make([]*v1alpha1.Cluster, n)
	for i := range out {
		out[i] = member(fmt.Sprintf("cluster-%d", i+1), "True", "Connected")
	}
	return out
}

// TestConsumerRoutesBounded checks that the largest federation reported
// makes a status that validation takes, however long its keys, and that the
// message of a route names only the first clusters that are out.
func TestConsumerRoutesBounded(t *testing.T) {
	long := func(i int) string { return strings.Repeat("z", 60) + fmt.Sprintf("%03d", i) }
	var clusters []*v1alpha1.Cluster
	var keys []string
	for i := range validation.MaxReportedMembers {
		c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: long(i)},
			Spec:   v1alpha1.ClusterSpec{Region: long(i), Zone: long(i), Group: long(i)},
			Status: v1alpha1.ClusterStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Connected"}}}}
		clusters = append(clusters, c)
		keys = append(keys, KeyOf(c))
	}
	routes, cond := consumerRoutes(routeInput{Namespace: "httpbin", Name: "httpbin", Clusters: clusters,
		Import: importOf(keys, 80, 443), Policy: policyOf(v1alpha1.LocalityLbType)})
	require.Len(t, routes, validation.MaxConsumerRoutes)
	assert.Equal(t, metav1.ConditionTrue, cond.Status)
	for _, r := range routes {
		assert.LessOrEqual(t, len(r.Message), validation.MaxRouteMessageLength)
		assert.True(t, strings.HasSuffix(r.Message, "; and 5 more"), "15 clusters are out, 10 are named: %s", r.Message)
	}

	// The status the controller would write passes validation.
	policy := newPolicy("httpbin", "httpbin")
	policy.ResourceVersion = "7"
	policy.Status.Consumers = routes
	internal := convertPolicy(t, policy)
	assert.Empty(t, validation.ValidateGlobalTrafficPolicyStatusUpdate(internal, internal))
}

func convertPolicy(t *testing.T, p *v1alpha1.GlobalTrafficPolicy) *flomesh.GlobalTrafficPolicy {
	t.Helper()
	out := &flomesh.GlobalTrafficPolicy{}
	require.NoError(t, v1alpha1.Convert_v1alpha1_GlobalTrafficPolicy_To_flomesh_GlobalTrafficPolicy(p, out, nil))
	return out
}
