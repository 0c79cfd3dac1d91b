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
		{name: "one verb", rules: []rbacv1.PolicyRule{rule("", []string{"services"}, "get")}, want: []Check{{"", "services", "get"}}},
		{name: "every combination, in order", rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"a", "b"}, Resources: []string{"x", "y"}, Verbs: []string{"get", "list"}},
		}, want: []Check{
			{"a", "x", "get"}, {"a", "x", "list"}, {"a", "y", "get"}, {"a", "y", "list"},
			{"b", "x", "get"}, {"b", "x", "list"}, {"b", "y", "get"}, {"b", "y", "list"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Checks(tt.rules))
		})
	}
}

func TestCheckString(t *testing.T) {
	assert.Equal(t, "list services", Check{"", "services", "list"}.String())
	assert.Equal(t, "patch serviceexports/status.flomesh.io", Check{"flomesh.io", "serviceexports/status", "patch"}.String())
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
	assert.Contains(t, Checks(Rules()), Check{"", "services", "list"}, "fedmesh-apiserver's")
	assert.Contains(t, Checks(Rules()), Check{"apiextensions.k8s.io", "customresourcedefinitions", "create"}, "fedmesh-syncer's")
}
