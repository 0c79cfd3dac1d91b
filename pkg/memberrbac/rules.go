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
	rbacv1 "k8s.io/api/rbac/v1"
)

// APIServerRules are what fedmesh-apiserver reads in a member: the
// ServiceExports and the Services they name, which it caches by watch.
var APIServerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
}

// Check is one permission to verify: a verb on a resource, cluster-wide.
type Check struct {
	Group, Resource, Verb string
}

// Checks expands rules into the single permissions they grant.
func Checks(rules []rbacv1.PolicyRule) []Check {
	var out []Check
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, Check{Group: g, Resource: res, Verb: v})
				}
			}
		}
	}
	return out
}

// String names a permission the way RBAC errors do.
func (c Check) String() string {
	if c.Group == "" {
		return c.Verb + " " + c.Resource
	}
	return c.Verb + " " + c.Resource + "." + c.Group
}
