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
package globaltrafficpolicy

import (
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/pkg/registry"
	"github.com/fedmesh/fedmesh/pkg/registry/table"
)

// REST is the storage of the globaltrafficpolicies resource.
type REST struct {
	*genericregistry.Store
	writes *Writes
}

// Writes tells which cluster keys the policy writes in progress name.
func (r *REST) Writes() *Writes { return r.writes }

var _ rest.ShortNamesProvider = &REST{}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"gtp"} }

// NewREST returns the storages of globaltrafficpolicies and their status.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*REST, *registry.StatusREST, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &flomesh.GlobalTrafficPolicy{} },
		NewListFunc:               func() runtime.Object { return &flomesh.GlobalTrafficPolicyList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  flomesh.Resource("globaltrafficpolicies"),
		SingularQualifiedResource: flomesh.Resource("globaltrafficpolicy"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, nil, err
	}
	// Status writes go around REST, and so around Writes: they never
	// change the targets.
	return &REST{Store: store, writes: NewWrites()}, registry.NewStatusREST(store, NewStatusStrategy(strategy)), nil
}

// maxTargetsShown bounds the Targets cell; -o yaml has the rest.
const maxTargetsShown = 3

var tableConvertor = table.Convertor{
	Columns: []metav1.TableColumnDefinition{
		{Name: "LB Type", Type: "string", Description: "how consumers route: Locality, FailOver or ActiveActive"},
		{Name: "Targets", Type: "string", Description: "cluster keys traffic may go to"},
		{Name: "Resolved", Type: "string", Description: "status of the Resolved condition: every target is a registered Cluster"},
		{Name: "Routed", Type: "string", Description: "status of the Routed condition: every member has a route to the service"},
	},
	Row: func(obj runtime.Object) ([]interface{}, error) {
		p, ok := obj.(*flomesh.GlobalTrafficPolicy)
		if !ok {
			return nil, table.Unexpected(obj)
		}
		return []interface{}{string(p.Spec.LbType), targets(p.Spec.Targets),
			table.ConditionStatus(p.Status.Conditions, "Resolved"), table.ConditionStatus(p.Status.Conditions, "Routed")}, nil
	},
}

func targets(ts []flomesh.TrafficTarget) string {
	if len(ts) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, maxTargetsShown)
	for i, t := range ts {
		if i == maxTargetsShown {
			break
		}
		keys = append(keys, t.ClusterKey)
	}
	s := strings.Join(keys, ",")
	if len(ts) > maxTargetsShown {
		s += " + " + strconv.Itoa(len(ts)-maxTargetsShown) + " more"
	}
	return s
}
