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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"
	genericinitializer "k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	listers "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/clusterrefs"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
)

// PluginName is the name of the plugin in --enable-admission-plugins and
// --disable-admission-plugins.
const PluginName = "ClusterKeyResolution"

// FieldManager is the field manager of the pending references the plugin
// records on Clusters.
const FieldManager = "fedmesh-admission"

// Register registers the plugin.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return New(), nil
	})
}

// Plugin checks, on create and update of a GlobalTrafficPolicy, that every
// target it adds is the key of a registered Cluster that is not being
// deleted, and records the reference on that Cluster before the policy is
// stored, so that ClusterInUseProtection cannot let the Cluster go in the
// meantime (see package clusterrefs for the race this closes). On delete of
// a policy it settles the references it recorded.
//
// Targets the stored policy already names are not judged again on update:
// they were judged when added, and a policy whose Cluster went away anyway
// (while the plugins were disabled) can still be edited, and fixed.
type Plugin struct {
	*admission.Handler
	// ready holds requests until the informer has synced.
	ready readiness.Gate

	clusters     listers.ClusterLister
	clusterIndex cache.Indexer
	client       versioned.Interface
	authz        authorizer.Authorizer
	initErr      error

	now func() time.Time
	// retry paces the attempts to record a reference when other writes
	// of the Cluster conflict with it: ten, over about five seconds.
	retry wait.Backoff
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
		Handler: admission.NewHandler(admission.Create, admission.Update, admission.Delete),
		now:     time.Now,
		retry:   wait.Backoff{Steps: 10, Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.5},
	}
}

// SetFedmeshInformerFactory takes the Cluster informer, indexed by key.
func (p *Plugin) SetFedmeshInformerFactory(f informers.SharedInformerFactory) {
	informer := f.Flomesh().V1alpha1().Clusters()
	if err := clusterrefs.AddIndexers(informer.Informer(), clusterrefs.ClusterIndexers()); err != nil {
		p.initErr = fmt.Errorf("indexing Clusters by key: %w", err)
	}
	p.clusters = informer.Lister()
	p.clusterIndex = informer.Informer().GetIndexer()
	p.ready = readiness.New(informer.Informer().HasSynced)
}

// SetFedmeshClientset takes the client of fresh reads and of references.
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
	case p.initErr != nil:
		return p.initErr
	case p.authz == nil:
		return fmt.Errorf("%s: missing authorizer", PluginName)
	case p.clusters == nil || p.clusterIndex == nil:
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
	case admission.Delete:
		p.settle(ctx, a)
	}
	return nil
}

// target is one key a write adds, and where the policy has it.
type target struct {
	key  string
	path *field.Path
}

// resolved is a target and the Cluster it names.
type resolved struct {
	target
	cluster *v1alpha1.Cluster
	// hints is whether errors about it may name registered keys.
	hints bool
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
	var found []resolved
	hints := p.allowed(ctx, a, "list", "", "")
	for _, t := range added {
		if ferr := p.authorizeTarget(ctx, a, policy.Namespace, t); ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		c, ferr, err := p.resolve(ctx, t, hints)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("looking up the Cluster of %s: %w", t.path, err))
		}
		if ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		found = append(found, resolved{t, c, hints})
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(flomesh.Kind("GlobalTrafficPolicy"), policy.Name, errs)
	}
	if a.IsDryRun() {
		return nil
	}
	return p.record(ctx, policy, old, found)
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

// resolve finds the Cluster of a target: in the cache, and when the cache
// does not have it (it may lag behind a Cluster just registered), in
// storage. A user error is a field error; err is a failure to look. hints
// says whether the error may name registered keys.
func (p *Plugin) resolve(ctx context.Context, t target, hints bool) (*v1alpha1.Cluster, *field.Error, error) {
	if errs := validation.ValidateClusterKey(t.key, t.path); len(errs) > 0 {
		e := errs[0]
		if s := p.suggest(t.key, nil, hints); s != "" {
			e.Detail += fmt.Sprintf("; did you mean %q?", s)
		}
		return nil, e, nil
	}
	c, err := clusterrefs.ClusterByKey(p.clusterIndex, t.key)
	if err != nil {
		return nil, nil, err
	}
	if c != nil && c.DeletionTimestamp == nil {
		// Recording the reference re-checks it against storage.
		return c, nil, nil
	}
	if c, err = p.get(ctx, t.key); err != nil {
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
	case c == nil || clusterrefs.KeyOf(c) != t.key:
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

// record records on each Cluster found that the policy is about to name
// it. A reference recorded for a write that then fails is harmless: it
// settles when the policy changes, or expires.
func (p *Plugin) record(ctx context.Context, policy, old *flomesh.GlobalTrafficPolicy, found []resolved) error {
	deadline, hasDeadline := ctx.Deadline()
	now := p.now()
	ref := clusterrefs.Pending{
		Policy:  policy.Namespace + "/" + policy.Name,
		UID:     policy.UID,
		Expires: metav1.NewTime(clusterrefs.Expiry(now, deadline, hasDeadline).UTC().Truncate(time.Second).Add(time.Second)),
	}
	if old != nil {
		ref.ResourceVersion = old.ResourceVersion
	}
	for _, r := range found {
		ferr, err := p.addPending(ctx, r, ref)
		if ferr != nil {
			return apierrors.NewInvalid(flomesh.Kind("GlobalTrafficPolicy"), policy.Name, field.ErrorList{ferr})
		}
		if apierrors.IsConflict(err) {
			return apierrors.NewConflict(flomesh.Resource("globaltrafficpolicies"), policy.Name,
				fmt.Errorf("Cluster %q is being changed by many writers; try again", r.cluster.Name))
		}
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("recording the reference to Cluster %q: %w", r.cluster.Name, err))
		}
	}
	return nil
}

// addPending adds ref to the pending references of r's Cluster, with a
// patch conditional on the version that was judged: if the Cluster changed
// since, it is read and judged again.
func (p *Plugin) addPending(ctx context.Context, r resolved, ref clusterrefs.Pending) (*field.Error, error) {
	c := r.cluster
	retry := p.retry
	if c.ResourceVersion == "" {
		// Without a version the patch would not be conditional.
		fresh, err := p.get(ctx, r.key)
		if err != nil {
			return nil, err
		}
		var ferr *field.Error
		if c, ferr = p.judge(r.target, fresh, r.hints); ferr != nil {
			return ferr, nil
		}
	}
	for {
		refs := clusterrefs.Add(clusterrefs.Decode(c.Annotations), ref, p.now())
		_, err := p.client.FlomeshV1alpha1().Clusters().Patch(ctx, c.Name, types.MergePatchType,
			clusterrefs.Patch(c.ResourceVersion, refs), metav1.PatchOptions{FieldManager: FieldManager})
		switch {
		case err == nil:
			return nil, nil
		case apierrors.IsNotFound(err):
			_, ferr := p.judge(r.target, nil, r.hints)
			return ferr, nil
		case !apierrors.IsConflict(err) || retry.Steps <= 1:
			return nil, err
		}
		if err := sleep(ctx, retry.Step()); err != nil {
			return nil, err
		}
		fresh, err := p.get(ctx, r.key)
		if err != nil {
			return nil, err
		}
		var ferr *field.Error
		if c, ferr = p.judge(r.target, fresh, r.hints); ferr != nil {
			return ferr, nil
		}
	}
}

// settle, on delete of a policy, removes from its target Clusters the
// references of its writes that a fresh read shows stored. Without it, the
// reference of a create would hold its Clusters until it expired once the
// policy is gone: "delete the policy, then the cluster" would have to wait.
// It is best effort: a reference it leaves expires.
func (p *Plugin) settle(ctx context.Context, a admission.Attributes) {
	old, ok := a.GetOldObject().(*flomesh.GlobalTrafficPolicy)
	if !ok || a.IsDryRun() || len(old.Spec.Targets) == 0 || p.client == nil {
		return
	}
	name := old.Namespace + "/" + old.Name
	stored := map[string]clusterrefs.PolicyState{}
	cur, err := p.client.FlomeshV1alpha1().GlobalTrafficPolicies(old.Namespace).Get(ctx, old.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		stored[name] = clusterrefs.PolicyState{UID: cur.UID, ResourceVersion: cur.ResourceVersion}
	case !apierrors.IsNotFound(err):
		klog.FromContext(ctx).V(2).Info("Not settling pending references", "policy", name, "err", err)
		return
	}
	for _, key := range distinctKeys(old) {
		if err := p.settleOn(ctx, key, old.UID, stored); err != nil {
			klog.FromContext(ctx).V(2).Info("Not settling pending references", "policy", name, "clusterKey", key, "err", err)
		}
	}
}

func (p *Plugin) settleOn(ctx context.Context, key string, uid types.UID, stored map[string]clusterrefs.PolicyState) error {
	retry := p.retry
	for {
		c, err := p.get(ctx, key)
		if err != nil || c == nil || clusterrefs.KeyOf(c) != key {
			return err
		}
		now := p.now()
		refs := clusterrefs.Decode(c.Annotations)
		kept := clusterrefs.Remove(refs, now, func(q clusterrefs.Pending) bool {
			return q.UID == uid && !q.Unsettled(now, stored)
		})
		if len(kept) == len(refs) {
			return nil
		}
		_, err = p.client.FlomeshV1alpha1().Clusters().Patch(ctx, c.Name, types.MergePatchType,
			clusterrefs.Patch(c.ResourceVersion, kept), metav1.PatchOptions{FieldManager: FieldManager})
		if !apierrors.IsConflict(err) || retry.Steps <= 1 {
			return err
		}
		if err := sleep(ctx, retry.Step()); err != nil {
			return err
		}
	}
}

func distinctKeys(p *flomesh.GlobalTrafficPolicy) []string {
	keys := sets.New[string]()
	for _, t := range p.Spec.Targets {
		keys.Insert(t.ClusterKey)
	}
	return sets.List(keys)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
