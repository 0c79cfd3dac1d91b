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

package routing

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

const (
	c1 = "default/default/default/cluster-1"
	c2 = "default/default/default/cluster-2"
	c3 = "default/default/default/cluster-3"
	c4 = "default/default/default/cluster-4"
)

// httpbin is the walkthrough's import: port 8080 exported by the given
// clusters, each at its gateway 127.0.0.1:8N.
func httpbin(exporters ...string) *v1alpha1.ServiceImport {
	imp := &v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}}
	port := v1alpha1.ServicePort{Port: 8080, Protocol: "TCP"}
	for _, c := range exporters {
		n := c[len(c)-1:]
		port.Endpoints = append(port.Endpoints, v1alpha1.Endpoint{ClusterKey: c, Target: v1alpha1.Target{
			Host: "127.0.0.1", IP: "127.0.0.1", Port: int32(80 + int(n[0]-'0')), Path: "/cluster-" + n + "/httpbin-mesh",
		}})
	}
	imp.Spec.Ports = []v1alpha1.ServicePort{port}
	return imp
}

func policy(lb v1alpha1.LoadBalancerType, targets ...v1alpha1.TrafficTarget) *v1alpha1.GlobalTrafficPolicySpec {
	return &v1alpha1.GlobalTrafficPolicySpec{LbType: lb, Targets: targets}
}

func target(key string) v1alpha1.TrafficTarget { return v1alpha1.TrafficTarget{ClusterKey: key} }

func weighted(key string, w int32) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{ClusterKey: key, Weight: &w}
}

var local = []Backend{{Host: "10.0.0.2", Port: 8080}}

// summary is a route in one line: tiers separated by " | ", each a list of
// cluster suffixes with weights, so the table reads like the walkthrough.
func summary(r Route) string {
	var tiers []string
	for _, t := range r.Tiers {
		var ds []string
		for _, d := range t {
			name := d.Cluster[strings.LastIndex(d.Cluster, "/")+1:]
			if d.Local {
				name += "(local)"
			}
			ds = append(ds, name+"="+strconv.Itoa(int(d.Weight)))
		}
		tiers = append(tiers, strings.Join(ds, ","))
	}
	return strings.Join(tiers, " | ")
}

func reasons(r Route) map[string]Reason {
	out := map[string]Reason{}
	for _, d := range r.Decisions {
		out[d.Cluster[strings.LastIndex(d.Cluster, "/")+1:]] = d.Reason
	}
	return out
}

func TestCompute(t *testing.T) {
	invalid := httpbin(c1)
	invalid.Status.Exports = []v1alpha1.ExportStatus{{Cluster: c3, Conditions: []metav1.Condition{{
		Type: imports.ConditionValid, Status: metav1.ConditionFalse, Reason: "InvalidExport", Message: "rule 0 names port 9090, which the Service lacks",
	}}}}
	narrow := httpbin(c1, c3)
	narrow.Status.Exports = []v1alpha1.ExportStatus{{Cluster: c3, TargetClusters: []string{c4}}}

	for _, tc := range []struct {
		name    string
		in      Input
		want    string // summary of the tiers
		reasons map[string]Reason
	}{
		// The walkthrough, from a client in cluster-2.
		{
			name:    "no policy and no local httpbin: no route",
			in:      Input{Consumer: c2, Port: 8080, Import: httpbin(c1, c3)},
			want:    "",
			reasons: map[string]Reason{"cluster-1": NotATarget, "cluster-2": NoLocalEndpoints, "cluster-3": NotATarget},
		},
		{
			name:    "FailOver without local httpbin: the targets share the load",
			in:      Input{Consumer: c2, Port: 8080, Import: httpbin(c1, c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))},
			want:    "cluster-1=100,cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": Target},
		},
		{
			name:    "FailOver with local httpbin: local first, targets second",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1, c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))},
			want:    "cluster-2(local)=100 | cluster-1=100,cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": Local, "cluster-3": Target},
		},
		{
			name:    "ActiveActive: local and targets in one tier",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1, c3), Policy: policy(v1alpha1.ActiveActiveLbType, target(c1), target(c3))},
			want:    "cluster-2(local)=100,cluster-1=100,cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": Local, "cluster-3": Target},
		},
		// Edge cases.
		{
			name:    "Locality with local endpoints",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1), Policy: policy(v1alpha1.LocalityLbType)},
			want:    "cluster-2(local)=100",
			reasons: map[string]Reason{"cluster-1": NotATarget, "cluster-2": Local},
		},
		{
			name:    "an empty lbType is Locality",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1), Policy: policy("")},
			want:    "cluster-2(local)=100",
			reasons: map[string]Reason{"cluster-1": NotATarget, "cluster-2": Local},
		},
		{
			name:    "FailOver without targets routes as Locality",
			in:      Input{Consumer: c2, Port: 8080, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType)},
			want:    "",
			reasons: map[string]Reason{"cluster-1": NotATarget, "cluster-2": NoLocalEndpoints},
		},
		{
			name:    "ActiveActive without targets takes every exporter",
			in:      Input{Consumer: c2, Port: 8080, Import: httpbin(c1, c3), Policy: policy(v1alpha1.ActiveActiveLbType)},
			want:    "cluster-1=100,cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": Target},
		},
		{
			name:    "a target that does not export the service",
			in:      Input{Consumer: c2, Port: 8080, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))},
			want:    "cluster-1=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": NotExported},
		},
		{
			name:    "a target that exports another port only",
			in:      Input{Consumer: c2, Port: 9090, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType, target(c1))},
			want:    "",
			reasons: map[string]Reason{"cluster-1": NotExported, "cluster-2": NoLocalEndpoints},
		},
		{
			name:    "a target whose export is not exported to the consumer",
			in:      Input{Consumer: c2, Port: 8080, Import: narrow, Policy: policy(v1alpha1.ActiveActiveLbType, target(c1), target(c3))},
			want:    "cluster-1=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": NotExported},
		},
		{
			name:    "a target whose export is invalid",
			in:      Input{Consumer: c2, Port: 8080, Import: invalid, Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))},
			want:    "cluster-1=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": InvalidExport},
		},
		{
			name:    "an invalid export the policy does not name is explained too",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: invalid},
			want:    "cluster-2(local)=100",
			reasons: map[string]Reason{"cluster-1": NotATarget, "cluster-2": Local, "cluster-3": InvalidExport},
		},
		{
			name: "a target that is not Ready and whose endpoints are withdrawn",
			in: Input{Consumer: c2, Port: 8080, Import: httpbin(c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3)),
				Health: map[string]Health{c1: {Ready: false, Reason: "Unreachable"}, c3: {Ready: true}}},
			want:    "cluster-3=100",
			reasons: map[string]Reason{"cluster-1": NotReady, "cluster-2": NoLocalEndpoints, "cluster-3": Target},
		},
		{
			name: "a target that is not Ready but still in its grace is routed to, as the gateways do",
			in: Input{Consumer: c2, Port: 8080, Import: httpbin(c1, c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3)),
				Health: map[string]Health{c1: {Ready: false, Reason: "Unreachable"}, c3: {Ready: true}}},
			want:    "cluster-1=100,cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": NoLocalEndpoints, "cluster-3": Target},
		},
		{
			name:    "weights, and a weight of zero drains a target",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1, c3, c4), Policy: policy(v1alpha1.ActiveActiveLbType, weighted(c1, 3), weighted(c3, 0), weighted(c2, 1), target(c4))},
			want:    "cluster-2(local)=1,cluster-1=3,cluster-4=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": Local, "cluster-3": ZeroWeight, "cluster-4": Target},
		},
		{
			name:    "a local weight of zero drains the local endpoints",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType, weighted(c2, 0), target(c1))},
			want:    "cluster-1=100",
			reasons: map[string]Reason{"cluster-1": Target, "cluster-2": ZeroWeight},
		},
		{
			name:    "the consumer's own export is never a remote destination",
			in:      Input{Consumer: c1, Port: 8080, LocalBackends: local, Import: httpbin(c1, c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))},
			want:    "cluster-1(local)=100 | cluster-3=100",
			reasons: map[string]Reason{"cluster-1": Local, "cluster-3": Target},
		},
		{
			name:    "no import: local only, whatever the policy",
			in:      Input{Consumer: c2, Port: 8080, LocalBackends: local, Policy: policy(v1alpha1.ActiveActiveLbType, target(c1))},
			want:    "cluster-2(local)=100",
			reasons: map[string]Reason{"cluster-1": NotExported, "cluster-2": Local},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Compute(tc.in)
			assert.Equal(t, tc.want, summary(r))
			assert.Equal(t, tc.reasons, reasons(r))
			for _, tier := range r.Tiers {
				require.NotEmpty(t, tier, "a route never holds an empty tier")
			}
		})
	}
}

func TestComputeKeepsRemoteTargets(t *testing.T) {
	r := Compute(Input{Consumer: c2, Port: 8080, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType, target(c1))})
	require.Len(t, r.Tiers, 1)
	assert.Equal(t, []Backend{{Host: "127.0.0.1", Port: 81, Path: "/cluster-1/httpbin-mesh"}}, r.Tiers[0][0].Backends)
}

func TestComputeDoesNotAlias(t *testing.T) {
	imp := httpbin(c1)
	backends := []Backend{{Host: "10.0.0.2", Port: 8080}}
	r := Compute(Input{Consumer: c2, Port: 8080, LocalBackends: backends, Import: imp, Policy: policy(v1alpha1.FailOverLbType, target(c1))})
	backends[0].Host = "changed"
	imp.Spec.Ports[0].Endpoints[0].Target.Path = "/changed"
	assert.Equal(t, "10.0.0.2", r.Tiers[0][0].Backends[0].Host)
	assert.Equal(t, "/cluster-1/httpbin-mesh", r.Tiers[1][0].Backends[0].Path)
}

func TestComputeSaysWhenAClusterIsInOnlyForItsGrace(t *testing.T) {
	r := Compute(Input{Consumer: c2, Port: 8080, Import: httpbin(c1), Policy: policy(v1alpha1.FailOverLbType, target(c1)),
		Health: map[string]Health{c1: {Ready: false, Reason: "Unreachable"}}})
	require.Len(t, r.Decisions, 2)
	assert.Equal(t, c1, r.Decisions[0].Cluster)
	assert.Contains(t, r.Decisions[0].Message, "not Ready (Unreachable), and is served until its grace runs out")
}

func TestSelect(t *testing.T) {
	r := Compute(Input{Consumer: c2, Port: 8080, LocalBackends: local, Import: httpbin(c1, c3), Policy: policy(v1alpha1.FailOverLbType, target(c1), target(c3))})
	all := func(string, Backend) bool { return true }
	notLocal := func(c string, _ Backend) bool { return c != c2 }
	onlyC3 := func(c string, _ Backend) bool { return c == c3 }
	none := func(string, Backend) bool { return false }

	i, tier := r.Select(all)
	assert.Equal(t, 0, i)
	assert.Equal(t, c2, tier[0].Cluster)

	i, tier = r.Select(notLocal)
	assert.Equal(t, 1, i, "with the local endpoints ejected, FailOver moves to the targets at once")
	assert.Len(t, tier, 2)

	i, tier = r.Select(onlyC3)
	assert.Equal(t, 1, i)
	require.Len(t, tier, 1)
	assert.Equal(t, c3, tier[0].Cluster)

	i, tier = r.Select(none)
	assert.Equal(t, -1, i)
	assert.Nil(t, tier)
	assert.Len(t, r.Tiers[1], 2, "Select leaves the route as it was")
}

func TestPick(t *testing.T) {
	tier := Tier{{Cluster: c1, Weight: 1}, {Cluster: c2, Weight: 3}}
	counts := map[string]int{}
	for n := range uint64(400) {
		counts[tier.Pick(n).Cluster]++
	}
	assert.Equal(t, map[string]int{c1: 100, c2: 300}, counts, "each cluster gets its weight's share")
}

func TestExplain(t *testing.T) {
	r := Compute(Input{Consumer: c2, Port: 8080, Import: httpbin(c3), Policy: policy(v1alpha1.FailOverLbType, target(c1)),
		Health: map[string]Health{c1: {Ready: false, Reason: "Unreachable", Message: "dial tcp: connection refused"}}})
	got := r.Explain()
	for _, want := range []string{
		"policy: FailOver",
		"no route",
		"default/default/default/cluster-1: out, NotReady: default/default/default/cluster-1 is not Ready (Unreachable: dial tcp: connection refused)",
		"default/default/default/cluster-2: out, NoLocalEndpoints",
		"default/default/default/cluster-3: out, NotATarget",
	} {
		assert.Contains(t, got, want)
	}
}

func TestBackendAddress(t *testing.T) {
	assert.Equal(t, "10.0.0.2:80", Backend{Host: "10.0.0.2", Port: 80}.Address())
	assert.Equal(t, "[fd00::2]:80", Backend{Host: "fd00::2", Port: 80}.Address())
}
