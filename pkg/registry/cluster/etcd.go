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
package cluster

import (
	"net"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/pkg/registry"
	"github.com/fedmesh/fedmesh/pkg/registry/table"
)

// REST is the storage of the clusters resource.
type REST struct {
	*genericregistry.Store
}

// NewREST returns the storages of clusters and clusters/status.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, kubeconfigs validation.KubeconfigPolicy) (*REST, *registry.StatusREST, error) {
	strategy := NewStrategy(scheme, kubeconfigs)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &flomesh.Cluster{} },
		NewListFunc:               func() runtime.Object { return &flomesh.ClusterList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  flomesh.Resource("clusters"),
		SingularQualifiedResource: flomesh.Resource("cluster"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, nil, err
	}
	return &REST{store}, registry.NewStatusREST(store, NewStatusStrategy(strategy)), nil
}

// tableConvertor prints where a cluster is and whether it is healthy, and
// never its kubeconfig.
var tableConvertor = table.Convertor{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Key", Type: "string", Description: "region/zone/group/name of the cluster"},
		{Name: "Gateway", Type: "string", Description: "host:port of the cluster's gateway"},
		{Name: "Ready", Type: "string", Description: "status of the Ready condition"},
		{Name: "Version", Type: "string", Priority: 1, Description: "Kubernetes version of the member"},
		{Name: "Exports", Type: "integer", Priority: 1, Description: "number of ServiceExports in the member"},
	},
	Row: func(obj runtime.Object) ([]interface{}, error) {
		c, ok := obj.(*flomesh.Cluster)
		if !ok {
			return nil, table.Unexpected(obj)
		}
		gateway := net.JoinHostPort(c.Spec.GatewayHost, strconv.Itoa(int(c.Spec.GatewayPort)))
		version := c.Status.KubernetesVersion
		if version == "" {
			version = "<unknown>"
		}
		return []interface{}{flomesh.KeyOf(c), gateway, table.ConditionStatus(c.Status.Conditions, "Ready"), version, int64(c.Status.ExportCount)}, nil
	},
}
