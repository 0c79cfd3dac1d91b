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

// Package clusterkeys holds the ClusterKeyResolution admission plugin: a
// GlobalTrafficPolicy may target only the keys of registered Clusters, and
// only by a user allowed to target them.
//
// A policy that targets a Cluster keeps it from being deleted
// (ClusterInUseProtection), so naming a Cluster is a power over a
// cluster-scoped object, which a namespace's editors must not hold by
// default. As RBAC's "bind" verb guards RoleBindings, the verb "target" on
// clusters.flomesh.io guards targets: the user who adds a target must be
// allowed to "target" that Cluster, by a ClusterRoleBinding or by a
// RoleBinding in the policy's namespace (the ClusterRole
// fedmesh:cluster-targeter grants it). The check comes before any lookup, so
// a user who may not target a Cluster learns nothing of whether it exists,
// and "did you mean" hints, which name registered keys, are given only to
// users who may list Clusters.
package clusterkeys

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	genericinitializer "k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	listers "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
	"github.com/fedmesh/fedmesh/pkg/protection"
)

// PluginName is the name of the plugin in --enable-admission-plugins and
// --disable-admission-plugins.
const PluginName = "ClusterKeyResolution"

// Register registers the plugin.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return New(), nil
	})
}

// Plugin checks, on create and update of a GlobalTrafficPolicy, that every
// target it adds is the key of a registered Cluster that is not being
// deleted. It writes nothing: a Cluster whose deletion begins while the
// policy is on its way to storage is kept by its finalizer until the policy
// lets it go (package protection).
//
// Targets the stored policy already names are not judged again on update:
// they were judged when added, and a policy whose Cluster went away anyway
// (while the plugins were disabled) can still be edited, and fixed.
type Plugin struct {
	*admission.Handler
	// ready holds requests until the informer has synced.
	ready readiness.Gate

	clusters listers.ClusterLister
	client   versioned.Interface
	authz    authorizer.Authorizer
}

var (
	_ admission.ValidationInterface           = &Plugin{}
	_ initializer.WantsFedmeshInformerFactory = &Plugin{}
	_ initializer.WantsFedmeshClientset       = &Plugin{}
	_ genericinitializer.WantsAuthorizer      = &Plugin{}
)

// TargetVerb is the verb on clusters.flomesh.io a user needs to add a
// Cluster's key to a policy's targets.
const TargetVerb = "target"

// New returns the plugin, to be initialized.
func New() *Plugin {
	return &Plugin{
		Handler: admission.NewHandler(admission.Create, admission.Update),
	}
}

// SetFedmeshInformerFactory takes the Cluster informer, whose cache gives
// the hints.
func (p *Plugin) SetFedmeshInformerFactory(f informers.SharedInformerFactory) {
	informer := f.Flomesh().V1alpha1().Clusters()
	p.clusters = informer.Lister()
	p.ready = readiness.New(informer.Informer().HasSynced)
}

// SetFedmeshClientset takes the client of fresh reads.
func (p *Plugin) SetFedmeshClientset(c versioned.Interface) {
	p.client = c
}

// SetAuthorizer takes the server's authorizer, which says who may target
// and list Clusters.
func (p *Plugin) SetAuthorizer(a authorizer.Authorizer) {
	p.authz = a
}

// ValidateInitialization checks that the plugin has what it needs.
func (p *Plugin) ValidateInitialization() error {
	switch {
	case p.authz == nil:
		return fmt.Errorf("%s: missing authorizer", PluginName)
	case p.clusters == nil:
		return fmt.Errorf("%s: missing Cluster informer", PluginName)
	case p.client == nil:
		return fmt.Errorf("%s: missing clientset", PluginName)
	}
	return nil
}

// Validate judges writes of GlobalTrafficPolicies.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetResource().GroupResource() != flomesh.Resource("globaltrafficpolicies") || a.GetSubresource() != "" {
		return nil
	}
	switch a.GetOperation() {
	case admission.Create, admission.Update:
		return p.validateWrite(ctx, a)
	}
	return nil
}

// target is one key a write adds, and where the policy has it.
type target struct {
	key  string
	path *field.Path
}

func (p *Plugin) validateWrite(ctx context.Context, a admission.Attributes) error {
	policy, ok := a.GetObject().(*flomesh.GlobalTrafficPolicy)
	if !ok {
		return apierrors.NewBadRequest(fmt.Sprintf("expected a GlobalTrafficPolicy, got %T", a.GetObject()))
	}
	var old *flomesh.GlobalTrafficPolicy
	if a.GetOperation() == admission.Update {
		if old, ok = a.GetOldObject().(*flomesh.GlobalTrafficPolicy); !ok {
			return apierrors.NewBadRequest(fmt.Sprintf("expected a GlobalTrafficPolicy, got %T", a.GetOldObject()))
		}
	}
	added := addedTargets(policy, old)
	if len(added) == 0 {
		return nil
	}
	if !p.ready.Wait(ctx) {
		return admission.NewForbidden(a, fmt.Errorf("not yet ready to handle request"))
	}

	var errs field.ErrorList
	hints := p.allowed(ctx, a, "list", "", "")
	for _, t := range added {
		if ferr := p.authorizeTarget(ctx, a, policy.Namespace, t); ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		_, ferr, err := p.resolve(ctx, t, hints)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("looking up the Cluster of %s: %w", t.path, err))
		}
		if ferr != nil {
			errs = append(errs, ferr)
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(flomesh.Kind("GlobalTrafficPolicy"), policy.Name, errs)
	}
	return nil
}

// addedTargets returns the distinct keys of policy that old does not name.
func addedTargets(policy, old *flomesh.GlobalTrafficPolicy) []target {
	seen := sets.New[string]()
	if old != nil {
		for _, t := range old.Spec.Targets {
			seen.Insert(t.ClusterKey)
		}
	}
	var added []target
	for i, t := range policy.Spec.Targets {
		if seen.Has(t.ClusterKey) {
			continue
		}
		seen.Insert(t.ClusterKey)
		added = append(added, target{key: t.ClusterKey, path: field.NewPath("spec", "targets").Index(i).Child("clusterKey")})
	}
	return added
}

// authorizeTarget returns the error of a target the user may not add: the
// verb "target" on the Cluster the key names, asked in the policy's
// namespace so that a RoleBinding there can grant it. A malformed key
// names no Cluster, and is left to resolve to refuse.
func (p *Plugin) authorizeTarget(ctx context.Context, a admission.Attributes, namespace string, t target) *field.Error {
	_, _, _, name, err := validation.ParseClusterKey(t.key)
	if err != nil {
		return nil
	}
	if p.allowed(ctx, a, TargetVerb, namespace, name) {
		return nil
	}
	return field.Forbidden(t.path, fmt.Sprintf(
		"targeting the Cluster %q needs the verb %q on clusters.flomesh.io, granted in namespace %q or cluster-wide (ClusterRole fedmesh:cluster-targeter)",
		name, TargetVerb, namespace))
}

// allowed asks the authorizer whether the requester may do verb on
// clusters.flomesh.io (of that name, if any), in namespace ("" for
// cluster-wide). A failure to decide is a no.
func (p *Plugin) allowed(ctx context.Context, a admission.Attributes, verb, namespace, name string) bool {
	decision, _, err := p.authz.Authorize(ctx, authorizer.AttributesRecord{
		User: a.GetUserInfo(), Verb: verb, Namespace: namespace, Name: name,
		APIGroup: flomesh.GroupName, APIVersion: "*", Resource: "clusters", ResourceRequest: true,
	})
	return err == nil && decision == authorizer.DecisionAllow
}

// resolve finds the Cluster of a target in storage, not in the cache,
// which may lag behind a Cluster just registered, deleted, or whose
// deletion began. A user error is a field error; err is a failure to look.
// hints says whether the error may name registered keys.
func (p *Plugin) resolve(ctx context.Context, t target, hints bool) (*v1alpha1.Cluster, *field.Error, error) {
	if errs := validation.ValidateClusterKey(t.key, t.path); len(errs) > 0 {
		e := errs[0]
		if s := p.suggest(t.key, nil, hints); s != "" {
			e.Detail += fmt.Sprintf("; did you mean %q?", s)
		}
		return nil, e, nil
	}
	c, err := p.get(ctx, t.key)
	if err != nil {
		return nil, nil, err
	}
	c, ferr := p.judge(t, c, hints)
	return c, ferr, nil
}

// get reads fresh from storage the Cluster named by the last part of key,
// whatever its key; nil if there is none.
func (p *Plugin) get(ctx context.Context, key string) (*v1alpha1.Cluster, error) {
	_, _, _, name, err := validation.ParseClusterKey(key)
	if err != nil {
		return nil, nil
	}
	c, err := p.client.FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return c, err
}

// judge returns c if it is a live Cluster of the target's key, and the
// field error that says why not otherwise, with a hint when hints is set.
func (p *Plugin) judge(t target, c *v1alpha1.Cluster, hints bool) (*v1alpha1.Cluster, *field.Error) {
	switch {
	case c == nil || protection.KeyOf(c) != t.key:
		msg := "no registered Cluster has this key"
		if s := p.suggest(t.key, c, hints); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return nil, field.Invalid(t.path, t.key, msg)
	case c.DeletionTimestamp != nil:
		return nil, field.Invalid(t.path, t.key, fmt.Sprintf("Cluster %q, of this key, is being deleted", c.Name))
	}
	return c, nil
}
