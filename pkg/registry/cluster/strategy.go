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
// Package cluster holds the etcd storage of Cluster objects.
package cluster

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

// clusterStrategy implements behavior for Cluster objects written through
// the main resource: users own the spec, fedmesh owns the status.
type clusterStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	// kubeconfigs says which unsafe member kubeconfig features the server
	// accepts.
	kubeconfigs validation.KubeconfigPolicy
}

// NewStrategy returns the strategy of the clusters resource.
func NewStrategy(typer runtime.ObjectTyper, kubeconfigs validation.KubeconfigPolicy) clusterStrategy {
	return clusterStrategy{typer, names.SimpleNameGenerator, kubeconfigs}
}

func (clusterStrategy) NamespaceScoped() bool { return false }

// GetResetFields keeps status out of the field sets of spec writers, so a
// server-side apply of the spec never claims or clears status fields.
func (clusterStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"flomesh.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

func (clusterStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	c := obj.(*flomesh.Cluster)
	c.Status = flomesh.ClusterStatus{ClusterKey: flomesh.KeyOf(c)}
	c.Generation = 1
}

func (clusterStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newC, oldC := obj.(*flomesh.Cluster), old.(*flomesh.Cluster)
	newC.Status = oldC.Status
	// The key is derived from the spec; keeping it in status lets clients
	// select and print it without recomputing.
	newC.Status.ClusterKey = flomesh.KeyOf(newC)
	if !apiequality.Semantic.DeepEqual(newC.Spec, oldC.Spec) {
		newC.Generation = oldC.Generation + 1
	}
}

func (s clusterStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateCluster(obj.(*flomesh.Cluster), s.kubeconfigs)
}

func (clusterStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (clusterStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (clusterStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (clusterStrategy) Canonicalize(obj runtime.Object) {}

func (s clusterStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateClusterUpdate(obj.(*flomesh.Cluster), old.(*flomesh.Cluster), s.kubeconfigs)
}

func (clusterStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// clusterStatusStrategy implements behavior for the status subresource:
// status writers can change nothing else.
type clusterStatusStrategy struct {
	clusterStrategy
}

// NewStatusStrategy returns the strategy of the clusters/status subresource.
func NewStatusStrategy(s clusterStrategy) clusterStatusStrategy {
	return clusterStatusStrategy{s}
}

func (clusterStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"flomesh.io/v1alpha1": fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
		),
	}
}

func (clusterStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newC, oldC := obj.(*flomesh.Cluster), old.(*flomesh.Cluster)
	newC.Spec = oldC.Spec
	newC.Labels = oldC.Labels
	newC.Annotations = oldC.Annotations
	newC.Status.ClusterKey = flomesh.KeyOf(oldC)
}

func (clusterStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateClusterStatusUpdate(obj.(*flomesh.Cluster), old.(*flomesh.Cluster))
}

func (clusterStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and fields of a Cluster for selection.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	c, ok := obj.(*flomesh.Cluster)
	if !ok {
		return nil, nil, fmt.Errorf("given object is not a Cluster")
	}
	return labels.Set(c.Labels), SelectableFields(c), nil
}

// SelectableFields are the fields a field selector can match: the metadata
// ones and the key.
func SelectableFields(c *flomesh.Cluster) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"status.clusterKey": c.Status.ClusterKey,
	}, &c.ObjectMeta, false)
}

// Match returns the predicate a list or watch uses to filter Clusters.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
