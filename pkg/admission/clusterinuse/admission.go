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

// Package clusterinuse holds the ClusterInUseProtection admission plugin: a
// Cluster that GlobalTrafficPolicies target can be neither deleted nor
// re-keyed until they stop naming it, and every new Cluster carries the
// protection finalizer.
package clusterinuse

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
	"github.com/fedmesh/fedmesh/pkg/protection"
)

// PluginName is the name of the plugin in --enable-admission-plugins and
// --disable-admission-plugins.
const PluginName = "ClusterInUseProtection"

// Register registers the plugin.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return New(), nil
	})
}

// Plugin refuses to delete a Cluster, or to change its key (region, zone or
// group), while a GlobalTrafficPolicy targets the key. It looks the key up
// in an informer cache indexed by target, confirms what the cache shows
// with fresh reads of those policies (the cache may still show a policy as
// it was before the user removed the key), and, when the cache shows none,
// lists the policies fresh from storage (the cache may not have a policy
// just stored yet).
//
// That is the early, friendly answer, not the guarantee: a policy write may
// still be on its way to storage when the delete is judged. The guarantee
// is the finalizer protection.Finalizer, which the plugin puts on every new
// Cluster, and which the cluster-protection controller removes from a
// Cluster being deleted only once no policy targets it.
type Plugin struct {
	*admission.Handler
	// ready holds requests until the informer has synced.
	ready readiness.Gate

	policyIndex cache.Indexer
	client      versioned.Interface
	initErr     error
}

var (
	_ admission.MutationInterface             = &Plugin{}
	_ admission.ValidationInterface           = &Plugin{}
	_ initializer.WantsFedmeshInformerFactory = &Plugin{}
	_ initializer.WantsFedmeshClientset       = &Plugin{}
)

// New returns the plugin, to be initialized.
func New() *Plugin {
	return &Plugin{
		Handler: admission.NewHandler(admission.Create, admission.Update, admission.Delete),
	}
}

// SetFedmeshInformerFactory takes the GlobalTrafficPolicy informer, indexed
// by target key.
func (p *Plugin) SetFedmeshInformerFactory(f informers.SharedInformerFactory) {
	informer := f.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer()
	if err := protection.AddIndexers(informer, protection.PolicyIndexers()); err != nil {
		p.initErr = fmt.Errorf("indexing GlobalTrafficPolicies by target: %w", err)
	}
	p.policyIndex = informer.GetIndexer()
	p.ready = readiness.New(informer.HasSynced)
}

// SetFedmeshClientset takes the client of fresh reads.
func (p *Plugin) SetFedmeshClientset(c versioned.Interface) {
	p.client = c
}

// ValidateInitialization checks that the plugin has what it needs.
func (p *Plugin) ValidateInitialization() error {
	switch {
	case p.initErr != nil:
		return p.initErr
	case p.policyIndex == nil:
		return fmt.Errorf("%s: missing GlobalTrafficPolicy informer", PluginName)
	case p.client == nil:
		return fmt.Errorf("%s: missing clientset", PluginName)
	}
	return nil
}

func isCluster(a admission.Attributes) bool {
	return a.GetResource().GroupResource() == flomesh.Resource("clusters") && a.GetSubresource() == ""
}

// Admit puts the protection finalizer on a new Cluster, so that it is
// protected from its first moment; the controller adds it to Clusters
// created without it.
func (p *Plugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if !isCluster(a) || a.GetOperation() != admission.Create {
		return nil
	}
	c, ok := a.GetObject().(*flomesh.Cluster)
	if !ok {
		return nil
	}
	for _, f := range c.Finalizers {
		if f == protection.Finalizer {
			return nil
		}
	}
	c.Finalizers = append(c.Finalizers, protection.Finalizer)
	return nil
}

// Validate refuses deletes and key changes of Clusters that policies target.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if !isCluster(a) {
		return nil
	}
	old, ok := a.GetOldObject().(*flomesh.Cluster)
	if !ok {
		return nil
	}
	key := flomesh.KeyOf(old)
	switch a.GetOperation() {
	case admission.Delete:
		return p.checkUnused(ctx, a, old, key, "cannot delete it")
	case admission.Update:
		c, ok := a.GetObject().(*flomesh.Cluster)
		if !ok {
			return nil
		}
		if newKey := flomesh.KeyOf(c); newKey != key {
			return p.checkUnused(ctx, a, old, key, fmt.Sprintf("cannot change its key to %q", newKey))
		}
	}
	return nil
}

// checkUnused returns nil if no policy targets key, the key of c as stored:
// none in the cache that a fresh read confirms, and none in a fresh list.
func (p *Plugin) checkUnused(ctx context.Context, a admission.Attributes, c *flomesh.Cluster, key, action string) error {
	if !p.ready.Wait(ctx) {
		return admission.NewForbidden(a, fmt.Errorf("not yet ready to handle request"))
	}
	cached, err := protection.PoliciesTargeting(p.policyIndex, key)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if len(cached) > 0 {
		names, err := p.confirm(ctx, key, cached)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("reading GlobalTrafficPolicies: %w", err))
		}
		if len(names) > 0 {
			return inUse(c.Name, key, action, names)
		}
	}
	// The cache may lag behind a policy just stored.
	names, err := p.listFresh(ctx, key)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing GlobalTrafficPolicies: %w", err))
	}
	if len(names) > 0 {
		return inUse(c.Name, key, action, names)
	}
	return nil
}

// confirm reads fresh from storage the policies the cache says target key
// (the first MaxListed: the error names no more) and returns those that
// still do, followed by the rest of the cache's. A policy changed a moment
// ago may still target key in the cache: without this, a user who removes
// the key from a policy and then deletes the Cluster could be refused.
func (p *Plugin) confirm(ctx context.Context, key string, cached []string) ([]string, error) {
	checked := min(len(cached), protection.MaxListed)
	var names []string
	for _, name := range cached[:checked] {
		namespace, policyName, _ := strings.Cut(name, "/")
		policy, err := p.client.FlomeshV1alpha1().GlobalTrafficPolicies(namespace).Get(ctx, policyName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		case protection.Targets(policy, key):
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return append(names, cached[checked:]...), nil
}

// listFresh lists every policy from storage, not the cache, and returns
// those that target key, namespace/name and sorted.
func (p *Plugin) listFresh(ctx context.Context, key string) ([]string, error) {
	var names []string
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := p.client.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			if policy := &list.Items[i]; protection.Targets(policy, key) {
				names = append(names, policy.Namespace+"/"+policy.Name)
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	sort.Strings(names)
	return names, nil
}

func inUse(name, key, action string, policies []string) error {
	return apierrors.NewForbidden(flomesh.Resource("clusters"), name,
		fmt.Errorf("%s: its key %q is a target of %s (%s); remove the key from their spec.targets first",
			action, key, protection.Policies(len(policies)), protection.ListNames(policies)))
}
