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

package imports

import (
	"slices"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// Audiences maps each exporting cluster of imp to its export's audience,
// the keys its spec.targetClusters lists; an absent or empty entry means
// every cluster.
func Audiences(imp *v1alpha1.ServiceImport) map[string][]string {
	audience := make(map[string][]string, len(imp.Status.Exports))
	for _, es := range imp.Status.Exports {
		if len(es.TargetClusters) > 0 {
			audience[es.Cluster] = es.TargetClusters
		}
	}
	return audience
}

// VisibleTo returns the endpoints of a port that the cluster consumer may
// use: those of other clusters whose exports are exported to consumer. A
// cluster never imports from itself: it reaches its own Service directly.
// It returns endpoints itself, unchanged, when all are visible.
func VisibleTo(consumer string, audience map[string][]string, endpoints []v1alpha1.Endpoint) []v1alpha1.Endpoint {
	visible := func(e v1alpha1.Endpoint) bool {
		if e.ClusterKey == consumer {
			return false
		}
		to := audience[e.ClusterKey]
		return len(to) == 0 || slices.Contains(to, consumer)
	}
	for i, e := range endpoints {
		if visible(e) {
			continue
		}
		// Copy only once something is left out.
		out := slices.Clone(endpoints[:i])
		for _, e := range endpoints[i+1:] {
			if visible(e) {
				out = append(out, e)
			}
		}
		return out
	}
	return endpoints
}
