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
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// What the controller and fedmesh's admission plugins share about the
// references from GlobalTrafficPolicies to Clusters: the cache indexes that
// find them without a scan, and the way a list of referrers is told to a
// user.

const (
	// ClusterKeyIndex indexes Clusters by their key, region/zone/group/name.
	ClusterKeyIndex = "flomesh.io/cluster-key"
	// TargetKeyIndex indexes GlobalTrafficPolicies by the keys they target.
	TargetKeyIndex = "flomesh.io/target-cluster-key"
)

// KeyOf returns the key of a versioned Cluster. Clusters read from the
// server are defaulted; an empty part is taken as its default all the same,
// so that the key never depends on who built the object.
func KeyOf(c *v1alpha1.Cluster) string {
	return members.Key(c.Name, &c.Spec)
}

// TargetKeys returns the distinct cluster keys a policy targets, sorted.
func TargetKeys(p *v1alpha1.GlobalTrafficPolicy) []string {
	keys := sets.New[string]()
	for _, t := range p.Spec.Targets {
		keys.Insert(t.ClusterKey)
	}
	return sets.List(keys)
}

// Targets reports whether a policy targets key.
func Targets(p *v1alpha1.GlobalTrafficPolicy, key string) bool {
	for _, t := range p.Spec.Targets {
		if t.ClusterKey == key {
			return true
		}
	}
	return false
}

func clusterKeyIndexFunc(obj interface{}) ([]string, error) {
	c, ok := obj.(*v1alpha1.Cluster)
	if !ok {
		return nil, fmt.Errorf("expected a Cluster, got %T", obj)
	}
	return []string{KeyOf(c)}, nil
}

func targetKeyIndexFunc(obj interface{}) ([]string, error) {
	p, ok := obj.(*v1alpha1.GlobalTrafficPolicy)
	if !ok {
		return nil, fmt.Errorf("expected a GlobalTrafficPolicy, got %T", obj)
	}
	return TargetKeys(p), nil
}

// ClusterIndexers are the indexes a Cluster cache needs: by key.
func ClusterIndexers() cache.Indexers {
	return cache.Indexers{ClusterKeyIndex: clusterKeyIndexFunc}
}

// PolicyIndexers are the indexes a GlobalTrafficPolicy cache needs: the
// namespace index of every namespaced cache, and by target key.
func PolicyIndexers() cache.Indexers {
	return cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		TargetKeyIndex:       targetKeyIndexFunc,
	}
}

// AddIndexers adds to a shared informer those of indexers it does not have
// yet, so that the controller and every plugin can ask for the indexes
// they use.
func AddIndexers(informer cache.SharedIndexInformer, indexers cache.Indexers) error {
	have := informer.GetIndexer().GetIndexers()
	missing := cache.Indexers{}
	for name, f := range indexers {
		if _, ok := have[name]; !ok {
			missing[name] = f
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return informer.AddIndexers(missing)
}

// ClusterByKey returns the cached Cluster of that key, or nil.
func ClusterByKey(indexer cache.Indexer, key string) (*v1alpha1.Cluster, error) {
	objs, err := indexer.ByIndex(ClusterKeyIndex, key)
	if err != nil {
		return nil, err
	}
	// Names are unique and the name is part of the key: at most one.
	for _, obj := range objs {
		if c, ok := obj.(*v1alpha1.Cluster); ok {
			return c, nil
		}
	}
	return nil, nil
}

// PoliciesTargeting returns the names, namespace/name and sorted, of the
// cached policies that target key.
func PoliciesTargeting(indexer cache.Indexer, key string) ([]string, error) {
	objs, err := indexer.ByIndex(TargetKeyIndex, key)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, obj := range objs {
		if p, ok := obj.(*v1alpha1.GlobalTrafficPolicy); ok {
			names = append(names, p.Namespace+"/"+p.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// MaxListed is how many names a message gives before it only counts.
const MaxListed = 10

// ListNames joins names for a message: the first MaxListed, then how many
// more there are.
func ListNames(names []string) string {
	if len(names) <= MaxListed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:MaxListed], ", "), len(names)-MaxListed)
}

// Policies says "GlobalTrafficPolicy" or "GlobalTrafficPolicies" after n.
func Policies(n int) string {
	if n == 1 {
		return "1 GlobalTrafficPolicy"
	}
	return fmt.Sprintf("%d GlobalTrafficPolicies", n)
}
