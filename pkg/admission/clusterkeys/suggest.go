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

package clusterkeys

import (
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/protection"
)

// suggest returns the key of a registered Cluster the user probably meant
// by key, or "". The name is the surest sign, since names are unique: a
// Cluster of the key's last part is the one meant, in another region, zone
// or group (the defaults are easy to assume). Otherwise the closest key by
// edit distance, if it is close: a typo. fresh is a Cluster just read from
// storage that the cache may not have yet. Nothing is suggested unless
// allowed: a hint reveals a registered key.
func (p *Plugin) suggest(key string, fresh *v1alpha1.Cluster, allowed bool) string {
	if !allowed {
		return ""
	}
	name := key[strings.LastIndex(key, "/")+1:]
	live := func(c *v1alpha1.Cluster) bool {
		return c != nil && c.DeletionTimestamp == nil && protection.KeyOf(c) != key
	}
	if live(fresh) && fresh.Name == name {
		return protection.KeyOf(fresh)
	}
	if c, err := p.clusters.Get(name); err == nil && live(c) {
		return protection.KeyOf(c)
	}
	all, err := p.clusters.List(labels.Everything())
	if err != nil {
		return ""
	}
	best, bestDistance := "", maxDistance(key)+1
	for _, c := range all {
		if !live(c) {
			continue
		}
		k := protection.KeyOf(c)
		if d := distance(key, k); d < bestDistance || d == bestDistance && k < best {
			best, bestDistance = k, d
		}
	}
	return best
}

// maxDistance is how far a key may be from a registered one to be taken for
// a typo of it: a quarter of its length, at least 1 and at most 3.
func maxDistance(key string) int {
	return max(1, min(3, len(key)/4))
}

// distance is the Levenshtein distance between a and b, in bytes: keys are
// DNS labels and slashes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
