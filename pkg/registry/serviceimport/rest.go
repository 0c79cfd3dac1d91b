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
package serviceimport

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/pkg/registry/table"
)

// REST serves ServiceImports from an Aggregate. It implements get, list and
// watch and nothing else, so the API server answers every write with 405
// Method Not Allowed and discovery lists exactly these verbs.
//
// A server that has just started fills its aggregate member by member. A
// client that read it then would take the imports of the members not yet
// reached for deleted, and fedmesh-syncer would withdraw them from every
// member. So until the aggregate is complete, every read is answered 429
// Too Many Requests with a Retry-After of one second, as kube-apiserver's
// watch cache answers while it initializes; clients retry. The server's
// readiness says the same, but a client may reach the server without
// passing a Service that heeds it.
type REST struct {
	agg *Aggregate
	// complete returns nil once the aggregate holds every member's
	// imports, and otherwise what it waits for; nil means always.
	complete func() error
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.Watcher              = &REST{}
	_ rest.TableConvertor       = &REST{}
	_ rest.ShortNamesProvider   = &REST{}
	_ rest.SingularNameProvider = &REST{}
)

// NewREST returns the storage of serviceimports over agg, which serves no
// read until complete returns nil; a nil complete serves them at once.
func NewREST(agg *Aggregate, complete func() error) *REST {
	return &REST{agg: agg, complete: complete}
}

// retryAfterSeconds is the Retry-After of a read refused while the
// aggregate is incomplete.
const retryAfterSeconds = 1

// ready refuses reads while the aggregate is incomplete.
func (r *REST) ready() error {
	if r.complete == nil {
		return nil
	}
	if err := r.complete(); err != nil {
		return apierrors.NewTooManyRequests("serviceimports are still being computed: "+err.Error(), retryAfterSeconds)
	}
	return nil
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &flomesh.ServiceImport{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return true }

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"simp"} }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "serviceimport" }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &flomesh.ServiceImportList{} }

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	if err := r.ready(); err != nil {
		return nil, err
	}
	namespace := genericapirequest.NamespaceValue(ctx)
	obj, ok := r.agg.Get(namespace, name)
	if !ok {
		return nil, apierrors.NewNotFound(flomesh.Resource("serviceimports"), name)
	}
	return obj, nil
}

// List implements rest.Lister. Every list is served from the current
// state, whatever resourceVersion it asks for: the aggregate is the only
// copy there is.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	if err := r.ready(); err != nil {
		return nil, err
	}
	pred, err := predicate(options)
	if err != nil {
		return nil, err
	}
	items, rv, err := r.agg.List(genericapirequest.NamespaceValue(ctx), pred)
	if err != nil {
		return nil, err
	}
	list := &flomesh.ServiceImportList{Items: items}
	list.ResourceVersion = rv
	return list, nil
}

// Watch implements rest.Watcher.
func (r *REST) Watch(ctx context.Context, options *metainternalversion.ListOptions) (watch.Interface, error) {
	if err := r.ready(); err != nil {
		return nil, err
	}
	pred, err := predicate(options)
	if err != nil {
		return nil, err
	}
	opts := watchOptions{
		namespace:       genericapirequest.NamespaceValue(ctx),
		pred:            pred,
		resourceVersion: options.ResourceVersion,
		bookmarks:       options.AllowWatchBookmarks,
	}
	if options.SendInitialEvents != nil {
		opts.sendInitialEvents = *options.SendInitialEvents
	}
	return r.agg.Watch(ctx, opts)
}

// predicate turns the selectors of a request into a predicate, refusing
// field selectors on other fields than the metadata ones.
func predicate(options *metainternalversion.ListOptions) (storage.SelectionPredicate, error) {
	label, field := labels.Everything(), fields.Everything()
	if options != nil && options.LabelSelector != nil {
		label = options.LabelSelector
	}
	if options != nil && options.FieldSelector != nil {
		field = options.FieldSelector
		for _, req := range field.Requirements() {
			if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
				return storage.SelectionPredicate{}, apierrors.NewBadRequest(fmt.Sprintf(
					"field label not supported: %s (serviceimports select on metadata.name and metadata.namespace)", req.Field))
			}
		}
	}
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: getAttrs}, nil
}

func getAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	si, ok := obj.(*flomesh.ServiceImport)
	if !ok {
		return nil, nil, fmt.Errorf("not a ServiceImport: %T", obj)
	}
	return labels.Set(si.Labels), generic.ObjectMetaFieldsSet(&si.ObjectMeta, true), nil
}

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return tableConvertor.ConvertToTable(ctx, object, tableOptions)
}

var tableConvertor = table.Convertor{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Type", Type: "string", Description: "ClusterSetIP or Headless"},
		{Name: "Ports", Type: "string", Description: "ports of the imported service"},
		{Name: "Clusters", Type: "string", Description: "keys of the exporting clusters"},
	},
	Row: func(obj runtime.Object) ([]interface{}, error) {
		si, ok := obj.(*flomesh.ServiceImport)
		if !ok {
			return nil, table.Unexpected(obj)
		}
		ports := make([]string, 0, len(si.Spec.Ports))
		for _, p := range si.Spec.Ports {
			ports = append(ports, strconv.Itoa(int(p.Port))+"/"+string(p.Protocol))
		}
		clusters := make([]string, 0, len(si.Status.Clusters))
		for _, c := range si.Status.Clusters {
			clusters = append(clusters, c.Cluster)
		}
		return []interface{}{string(si.Spec.Type), orNone(strings.Join(ports, ",")), orNone(strings.Join(clusters, ","))}, nil
	},
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
