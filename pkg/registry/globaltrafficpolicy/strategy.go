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
// Package globaltrafficpolicy holds the etcd storage of GlobalTrafficPolicy objects.
package globaltrafficpolicy

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

// policyStrategy implements behavior for GlobalTrafficPolicy objects written
// through the main resource: users own the spec, fedmesh owns the status.
type policyStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of the globaltrafficpolicies resource.
func NewStrategy(typer runtime.ObjectTyper) policyStrategy {
	return policyStrategy{typer, names.SimpleNameGenerator}
}

func (policyStrategy) NamespaceScoped() bool { return true }

// GetResetFields keeps status out of the field sets of spec writers.
func (policyStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"flomesh.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

func (policyStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	p := obj.(*flomesh.GlobalTrafficPolicy)
	p.Status = flomesh.GlobalTrafficPolicyStatus{}
	p.Generation = 1
}

func (policyStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newP, oldP := obj.(*flomesh.GlobalTrafficPolicy), old.(*flomesh.GlobalTrafficPolicy)
	newP.Status = oldP.Status
	if !apiequality.Semantic.DeepEqual(newP.Spec, oldP.Spec) {
		newP.Generation = oldP.Generation + 1
	}
}

func (policyStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateGlobalTrafficPolicy(obj.(*flomesh.GlobalTrafficPolicy))
}

func (policyStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (policyStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (policyStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (policyStrategy) Canonicalize(obj runtime.Object) {}

func (policyStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateGlobalTrafficPolicyUpdate(obj.(*flomesh.GlobalTrafficPolicy), old.(*flomesh.GlobalTrafficPolicy))
}

func (policyStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// policyStatusStrategy implements behavior for the status subresource.
type policyStatusStrategy struct {
	policyStrategy
}

// NewStatusStrategy returns the strategy of the globaltrafficpolicies/status subresource.
func NewStatusStrategy(s policyStrategy) policyStatusStrategy {
	return policyStatusStrategy{s}
}

func (policyStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"flomesh.io/v1alpha1": fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
		),
	}
}

func (policyStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newP, oldP := obj.(*flomesh.GlobalTrafficPolicy), old.(*flomesh.GlobalTrafficPolicy)
	newP.Spec = oldP.Spec
	newP.Labels = oldP.Labels
	newP.Annotations = oldP.Annotations
}

func (policyStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateGlobalTrafficPolicyStatusUpdate(obj.(*flomesh.GlobalTrafficPolicy), old.(*flomesh.GlobalTrafficPolicy))
}

func (policyStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and fields of a GlobalTrafficPolicy for selection.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	p, ok := obj.(*flomesh.GlobalTrafficPolicy)
	if !ok {
		return nil, nil, fmt.Errorf("given object is not a GlobalTrafficPolicy")
	}
	return labels.Set(p.Labels), SelectableFields(p), nil
}

// SelectableFields are the fields a field selector can match.
func SelectableFields(p *flomesh.GlobalTrafficPolicy) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.lbType": string(p.Spec.LbType),
	}, &p.ObjectMeta, true)
}

// Match returns the predicate a list or watch uses to filter policies.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
