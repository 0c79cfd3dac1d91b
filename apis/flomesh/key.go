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
package flomesh

import "strings"

// ClusterKeyParts is the number of parts of a cluster key.
const ClusterKeyParts = 4

// ClusterKey returns the key region/zone/group/name of a cluster. Callers
// pass defaulted parts; the key of an undefaulted spec is not meaningful.
func ClusterKey(region, zone, group, name string) string {
	return strings.Join([]string{region, zone, group, name}, "/")
}

// KeyOf returns the key of a Cluster.
func KeyOf(c *Cluster) string {
	return ClusterKey(c.Spec.Region, c.Spec.Zone, c.Spec.Group, c.Name)
}
