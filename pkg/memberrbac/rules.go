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

// Package memberrbac says what fedmesh does in a member cluster, as RBAC
// rules: the permissions a member's identity for fedmesh must hold, no
// more. fedmesh-apiserver checks them when it probes a member, and
// "kubectl fedmesh join" grants exactly them.
package memberrbac

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// APIServerRules are what fedmesh-apiserver reads in a member: the
// ServiceExports and the Services they name, which it caches by watch.
var APIServerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
}

// CRDNames are the member CRDs fedmesh uses (artifacts/crds). The
// member's administrator installs them ("kubectl fedmesh join"); fedmesh
// may read and upgrade these three, by name, and no other CRD: the right
// to patch any CRD is the right to redefine, through a conversion webhook,
// every object of every API the member's CRDs serve.
var CRDNames = []string{"globaltrafficpolicies.flomesh.io", "serviceexports.flomesh.io", "serviceimports.flomesh.io"}

// SyncerRules are what fedmesh-syncer does in a member (pkg/syncer): it
// reads the member CRDs by name and upgrades them in place (server-side
// apply of an existing CRD is a patch), caches by watch the ServiceImports,
// GlobalTrafficPolicies, ServiceExports and Ingresses it reads and writes
// and the metadata of Services and namespaces, applies and deletes the
// imports, policies and Ingresses it owns, creates the namespaces they
// need, applies the Valid and Conflict conditions of the ServiceExports,
// and records conflicts as events.
var SyncerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, ResourceNames: CRDNames, Verbs: []string{"get", "patch"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceimports", "globaltrafficpolicies"}, Verbs: []string{"get", "list", "watch", "create", "patch", "delete"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports/status"}, Verbs: []string{"patch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get", "list", "watch", "create", "patch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch", "create"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

// GatewayRules are what fedmesh-gateway reads in its own member, and all
// it may do there: it routes from the ServiceImports and
// GlobalTrafficPolicies fedmesh-syncer writes, the Ingresses of its class,
// and the Services and EndpointSlices they lead to, all cached by watch. It
// writes nothing, and reads no Secret. "kubectl fedmesh join" grants them
// to the ServiceAccount GatewayServiceAccount of IdentityNamespace, by the
// ClusterRole and ClusterRoleBinding GatewayRole.
var GatewayRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceimports", "globaltrafficpolicies"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
}

// GatewayServiceAccount is fedmesh-gateway's identity in a member, in
// IdentityNamespace.
const GatewayServiceAccount = "fedmesh-gateway"

// GatewayRole names the ClusterRole and ClusterRoleBinding that grant
// GatewayServiceAccount the GatewayRules.
const GatewayRole = "fedmesh:gateway"

// IdentityNamespace is the member namespace of fedmesh's own identity:
// its ServiceAccount and the Secrets its tokens are bound to.
const IdentityNamespace = "fedmesh-system"

// TokenSecretsSelector selects, in IdentityNamespace, the Secrets that
// fedmesh's tokens are bound to ("kubectl fedmesh join" labels them).
const TokenSecretsSelector = "app.kubernetes.io/managed-by=kubectl-fedmesh"

// TokenRules are what fedmesh-syncer may do in IdentityNamespace, and
// nowhere else: when its Cluster is deleted, it revokes its own tokens by
// deleting, as one collection selected by TokenSecretsSelector, the Secrets
// they are bound to. deletecollection lets it neither read nor list a
// Secret. "kubectl fedmesh join" grants them by a Role of that namespace.
var TokenRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"deletecollection"}},
}

// Rules are every permission fedmesh needs in a member, those of
// fedmesh-apiserver and of fedmesh-syncer, merged: one rule per API group
// and resource, in a stable order. "kubectl fedmesh join" grants them.
func Rules() []rbacv1.PolicyRule {
	return Merge(APIServerRules, SyncerRules)
}

// Merge unions rule sets into one rule per API group, resource and set of
// object names, with the verbs of every rule that names them. Groups,
// resources, names and verbs are sorted, verbs in the order RBAC
// documentation uses (reads first).
func Merge(sets ...[]rbacv1.PolicyRule) []rbacv1.PolicyRule {
	type gr struct{ group, resource, names string }
	verbs := map[gr]map[string]bool{}
	for _, rules := range sets {
		for _, r := range rules {
			names := slices.Clone(r.ResourceNames)
			sort.Strings(names)
			for _, c := range Checks([]rbacv1.PolicyRule{{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs}}) {
				k := gr{c.Group, c.Resource, strings.Join(names, ",")}
				if verbs[k] == nil {
					verbs[k] = map[string]bool{}
				}
				verbs[k][c.Verb] = true
			}
		}
	}
	keys := make([]gr, 0, len(verbs))
	for k := range verbs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].group != keys[j].group {
			return keys[i].group < keys[j].group
		}
		if keys[i].resource != keys[j].resource {
			return keys[i].resource < keys[j].resource
		}
		return keys[i].names < keys[j].names
	})
	out := make([]rbacv1.PolicyRule, 0, len(keys))
	for _, k := range keys {
		vs := make([]string, 0, len(verbs[k]))
		for v := range verbs[k] {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(i, j int) bool {
			return verbRank(vs[i]) < verbRank(vs[j]) || verbRank(vs[i]) == verbRank(vs[j]) && vs[i] < vs[j]
		})
		r := rbacv1.PolicyRule{APIGroups: []string{k.group}, Resources: []string{k.resource}, Verbs: vs}
		if k.names != "" {
			r.ResourceNames = strings.Split(k.names, ",")
		}
		out = append(out, r)
	}
	return out
}

var verbOrder = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func verbRank(v string) int {
	for i, o := range verbOrder {
		if o == v {
			return i
		}
	}
	return len(verbOrder)
}

// Check is one permission to verify: a verb on a resource, cluster-wide,
// on the object Name only when Name is set.
type Check struct {
	Group, Resource, Verb, Name string
}

// Checks expands rules into the single permissions they grant: one per
// object name for rules that name objects.
func Checks(rules []rbacv1.PolicyRule) []Check {
	var out []Check
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, Check{Group: g, Resource: res, Verb: v, Name: n})
					}
				}
			}
		}
	}
	return out
}

// String names a permission the way RBAC errors do.
func (c Check) String() string {
	s := c.Verb + " " + c.Resource
	if c.Group != "" {
		s += "." + c.Group
	}
	if c.Name != "" {
		s += " " + strconv.Quote(c.Name)
	}
	return s
}

// Missing returns the first permission of checks that the rules, as a
// SelfSubjectRulesReview reports them, do not grant; ok is false when
// every permission is granted.
func Missing(rules []authorizationv1.ResourceRule, checks []Check) (missing Check, ok bool) {
	for _, c := range checks {
		if !allows(rules, c) {
			return c, true
		}
	}
	return Check{}, false
}

// allows matches one permission the way the RBAC authorizer does: "*"
// matches any group, resource or verb, and "*/sub" any resource's
// subresource sub. A rule that names objects grants a permission on one
// of them, never one on every object.
func allows(rules []authorizationv1.ResourceRule, c Check) bool {
	for _, r := range rules {
		if len(r.ResourceNames) > 0 && (c.Name == "" || !slices.Contains(r.ResourceNames, c.Name)) {
			continue
		}
		if matches(r.APIGroups, c.Group) && matchesResource(r.Resources, c.Resource) && matches(r.Verbs, c.Verb) {
			return true
		}
	}
	return false
}

func matches(values []string, want string) bool {
	for _, v := range values {
		if v == "*" || v == want {
			return true
		}
	}
	return false
}

func matchesResource(values []string, want string) bool {
	_, sub, hasSub := strings.Cut(want, "/")
	for _, v := range values {
		if v == "*" || v == want || (hasSub && v == "*/"+sub) {
			return true
		}
	}
	return false
}
