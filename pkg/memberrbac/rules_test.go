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
package memberrbac

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

func rule(group string, resources []string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: resources, Verbs: verbs}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name  string
		rules []rbacv1.PolicyRule
		want  []Check
	}{
		{name: "none"},
		{name: "one verb", rules: []rbacv1.PolicyRule{rule("", []string{"services"}, "get")}, want: []Check{{"", "services", "get", ""}}},
		{name: "every combination, in order", rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"a", "b"}, Resources: []string{"x", "y"}, Verbs: []string{"get", "list"}},
		}, want: []Check{
			{"a", "x", "get", ""}, {"a", "x", "list", ""}, {"a", "y", "get", ""}, {"a", "y", "list", ""},
			{"b", "x", "get", ""}, {"b", "x", "list", ""}, {"b", "y", "get", ""}, {"b", "y", "list", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Checks(tt.rules))
		})
	}
}

func TestCheckString(t *testing.T) {
	assert.Equal(t, "list services", Check{"", "services", "list", ""}.String())
	assert.Equal(t, "patch serviceexports/status.flomesh.io", Check{"flomesh.io", "serviceexports/status", "patch", ""}.String())
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name string
		sets [][]rbacv1.PolicyRule
		want []rbacv1.PolicyRule
	}{
		{name: "nothing", want: []rbacv1.PolicyRule{}},
		{name: "verbs of the same resource unite, reads first",
			sets: [][]rbacv1.PolicyRule{
				{rule("", []string{"services"}, "watch", "get")},
				{rule("", []string{"services"}, "create", "list", "get")},
			},
			want: []rbacv1.PolicyRule{rule("", []string{"services"}, "get", "list", "watch", "create")}},
		{name: "rules that name objects stay apart from those that do not",
			sets: [][]rbacv1.PolicyRule{
				{{APIGroups: []string{"x"}, Resources: []string{"crds"}, ResourceNames: []string{"b", "a"}, Verbs: []string{"patch"}}},
				{{APIGroups: []string{"x"}, Resources: []string{"crds"}, ResourceNames: []string{"a", "b"}, Verbs: []string{"get"}}},
				{rule("x", []string{"crds"}, "list")},
			},
			want: []rbacv1.PolicyRule{
				rule("x", []string{"crds"}, "list"),
				{APIGroups: []string{"x"}, Resources: []string{"crds"}, ResourceNames: []string{"a", "b"}, Verbs: []string{"get", "patch"}},
			}},
		{name: "one rule per group and resource, sorted",
			sets: [][]rbacv1.PolicyRule{{
				{APIGroups: []string{"flomesh.io", ""}, Resources: []string{"serviceimports"}, Verbs: []string{"delete", "escalate"}},
				rule("apps", []string{"deployments"}, "get"),
			}},
			want: []rbacv1.PolicyRule{
				rule("", []string{"serviceimports"}, "delete", "escalate"),
				rule("apps", []string{"deployments"}, "get"),
				rule("flomesh.io", []string{"serviceimports"}, "delete", "escalate"),
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Merge(tt.sets...))
		})
	}
}

// TestRules checks that Rules grants every permission of both components,
// and nothing else.
func TestRules(t *testing.T) {
	want := map[Check]bool{}
	for _, c := range append(Checks(APIServerRules), Checks(SyncerRules)...) {
		want[c] = true
	}
	got := map[Check]bool{}
	for _, c := range Checks(Rules()) {
		assert.False(t, got[c], "%s granted twice", c)
		got[c] = true
	}
	assert.Equal(t, want, got)
	for _, r := range Rules() {
		assert.Len(t, r.APIGroups, 1)
		assert.Len(t, r.Resources, 1)
		assert.NotContains(t, r.Verbs, "*", "no wildcard")
		assert.NotContains(t, r.Resources, "*", "no wildcard")
	}
	assert.Contains(t, Checks(Rules()), Check{"", "services", "list", ""}, "fedmesh-apiserver's")
	assert.Contains(t, Checks(Rules()), Check{"apiextensions.k8s.io", "customresourcedefinitions", "patch", "serviceexports.flomesh.io"}, "fedmesh-syncer's")
	for _, c := range Checks(Rules()) {
		if c.Resource == "customresourcedefinitions" {
			assert.Contains(t, CRDNames, c.Name, "%s: fedmesh touches its own CRDs only", c)
			assert.Contains(t, []string{"get", "patch"}, c.Verb, "%s: fedmesh never creates or deletes a CRD", c)
		}
	}
}

// TestGatewayRules: fedmesh-gateway only reads, and never a Secret.
func TestGatewayRules(t *testing.T) {
	for _, c := range Checks(GatewayRules) {
		assert.Contains(t, []string{"get", "list", "watch"}, c.Verb, "%s: the gateway writes nothing", c)
		assert.NotEqual(t, "secrets", c.Resource, "%s: the gateway reads no Secret", c)
		assert.NotContains(t, []string{"*", ""}, c.Resource, "%s: no wildcard", c)
	}
	assert.Contains(t, Checks(GatewayRules), Check{"discovery.k8s.io", "endpointslices", "watch", ""})
}

func TestMissing(t *testing.T) {
	all := []authorizationv1.ResourceRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}
	exact := make([]authorizationv1.ResourceRule, 0)
	for _, r := range Rules() {
		exact = append(exact, authorizationv1.ResourceRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs, ResourceNames: r.ResourceNames})
	}
	withoutServices := make([]authorizationv1.ResourceRule, 0)
	for _, r := range exact {
		if r.Resources[0] != "services" {
			withoutServices = append(withoutServices, r)
		}
	}
	wildcardStatus := append([]authorizationv1.ResourceRule{}, exact...)
	for i, r := range wildcardStatus {
		if r.Resources[0] == "serviceexports/status" {
			wildcardStatus[i].Resources = []string{"*/status"}
		}
	}
	named := []authorizationv1.ResourceRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}, ResourceNames: []string{"one"}}}
	// Granting the CRDs by name, but one name short.
	twoCRDs := make([]authorizationv1.ResourceRule, 0)
	for _, r := range exact {
		if r.Resources[0] == "customresourcedefinitions" {
			r.ResourceNames = r.ResourceNames[:2]
		}
		twoCRDs = append(twoCRDs, r)
	}
	// Every CRD, unnamed, covers the named ones.
	everyCRD := make([]authorizationv1.ResourceRule, 0)
	for _, r := range exact {
		if r.Resources[0] == "customresourcedefinitions" {
			r.ResourceNames = nil
		}
		everyCRD = append(everyCRD, r)
	}

	for _, tc := range []struct {
		name    string
		rules   []authorizationv1.ResourceRule
		missing string
	}{
		{"cluster-admin", all, ""},
		{"exactly what join grants", exact, ""},
		{"a subresource through */status", wildcardStatus, ""},
		{"services removed", withoutServices, "get services"},
		{"named objects only", named, "create events"},
		{"a CRD name missing", twoCRDs, `get customresourcedefinitions.apiextensions.k8s.io "serviceimports.flomesh.io"`},
		{"every CRD", everyCRD, ""},
		{"nothing", nil, "create events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, missing := Missing(tc.rules, Checks(Rules()))
			if tc.missing == "" {
				assert.False(t, missing, "nothing missing, got %s", c)
				return
			}
			require.True(t, missing)
			assert.Equal(t, tc.missing, c.String())
		})
	}
}
