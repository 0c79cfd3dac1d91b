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
// re-keyed until they stop naming it.
package clusterinuse

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/clusterrefs"
	"github.com/fedmesh/fedmesh/pkg/admission/internal/readiness"
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
// in an informer cache indexed by target, and confirms what the cache
// shows with fresh reads of those policies (the cache may still show a
// policy as it was before the user removed the key). When the cache shows
// none, a fresh list from storage and the pending references recorded on the
// Cluster by ClusterKeyResolution decide: together they close the race with
// a policy written at the same moment (see package clusterrefs).
//
// It also keeps those pending references out of users' hands: on every
// write of a Cluster but fedmesh's own, the annotation that holds them is
// kept as stored (and dropped from a new Cluster).
type Plugin struct {
	*admission.Handler
	// ready holds requests until the informer has synced.
	ready readiness.Gate

	policyIndex cache.Indexer
	client      versioned.Interface
	initErr     error

	now func() time.Time
	// wait paces the fresh re-reads that give a policy write admitted a
	// moment ago the time to be stored, before answering Conflict.
	wait wait.Backoff
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
		now:     time.Now,
		wait:    wait.Backoff{Steps: 6, Duration: 20 * time.Millisecond, Factor: 2},
	}
}

// SetFedmeshInformerFactory takes the GlobalTrafficPolicy informer, indexed
// by target key.
func (p *Plugin) SetFedmeshInformerFactory(f informers.SharedInformerFactory) {
	informer := f.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer()
	if err := clusterrefs.AddIndexers(informer, clusterrefs.PolicyIndexers()); err != nil {
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

// Admit keeps the pending references of a Cluster as stored, whatever a
// user writes: a user who replaced a Cluster without them would reopen the
// race they close.
func (p *Plugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if !isCluster(a) || a.GetUserInfo() != nil && a.GetUserInfo().GetName() == user.APIServerUser {
		// fedmesh's own writes, through its loopback connection, are the
		// ones that record and settle references.
		return nil
	}
	c, ok := a.GetObject().(*flomesh.Cluster)
	if !ok {
		return nil
	}
	switch a.GetOperation() {
	case admission.Create:
		delete(c.Annotations, clusterrefs.PendingAnnotation)
	case admission.Update:
		old, ok := a.GetOldObject().(*flomesh.Cluster)
		if !ok {
			return nil
		}
		if v, ok := old.Annotations[clusterrefs.PendingAnnotation]; ok {
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[clusterrefs.PendingAnnotation] = v
		} else {
			delete(c.Annotations, clusterrefs.PendingAnnotation)
		}
	}
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
// none in the cache, none in a fresh list, and none pending on c.
func (p *Plugin) checkUnused(ctx context.Context, a admission.Attributes, c *flomesh.Cluster, key, action string) error {
	if !p.ready.Wait(ctx) {
		return admission.NewForbidden(a, fmt.Errorf("not yet ready to handle request"))
	}
	cached, err := clusterrefs.PoliciesTargeting(p.policyIndex, key)
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

	// The cache may lag behind a policy just stored; and a policy admitted
	// a moment ago may not be stored yet, which its pending reference on c
	// tells. c is the version the storage will delete or update only if it
	// is still current, so every reference recorded before is in view here,
	// and a reference recorded after makes the storage judge again.
	pending := clusterrefs.Decode(c.Annotations)
	wait := p.wait
	for {
		names, stored, err := p.listFresh(ctx, key)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("listing GlobalTrafficPolicies: %w", err))
		}
		if len(names) > 0 {
			return inUse(c.Name, key, action, names)
		}
		now := p.now()
		var unsettled []clusterrefs.Pending
		for _, q := range pending {
			if q.Unsettled(now, stored) {
				unsettled = append(unsettled, q)
			}
		}
		if len(unsettled) == 0 {
			return nil
		}
		if wait.Steps <= 0 {
			return inFlight(c.Name, key, action, unsettled)
		}
		// Such a write is normally stored within milliseconds: give it
		// the time, and answer with the policy that names the key.
		if err := sleep(ctx, wait.Step()); err != nil {
			return inFlight(c.Name, key, action, unsettled)
		}
	}
}

// confirm reads fresh from storage the policies the cache says target key
// (the first MaxListed: the error names no more) and returns those that
// still do, followed by the rest of the cache's. A policy changed a moment
// ago may still target key in the cache: without this, a user who removes
// the key from a policy and then deletes the Cluster could be refused.
func (p *Plugin) confirm(ctx context.Context, key string, cached []string) ([]string, error) {
	checked := min(len(cached), clusterrefs.MaxListed)
	var names []string
	for _, name := range cached[:checked] {
		namespace, policyName, _ := strings.Cut(name, "/")
		policy, err := p.client.FlomeshV1alpha1().GlobalTrafficPolicies(namespace).Get(ctx, policyName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		case clusterrefs.Targets(policy, key):
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return append(names, cached[checked:]...), nil
}

// listFresh lists every policy from storage, not the cache, and returns
// those that target key, namespace/name and sorted, and the state of all.
func (p *Plugin) listFresh(ctx context.Context, key string) ([]string, map[string]clusterrefs.PolicyState, error) {
	var names []string
	stored := map[string]clusterrefs.PolicyState{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := p.client.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, nil, err
		}
		for i := range list.Items {
			policy := &list.Items[i]
			name := policy.Namespace + "/" + policy.Name
			stored[name] = clusterrefs.PolicyState{UID: policy.UID, ResourceVersion: policy.ResourceVersion}
			if clusterrefs.Targets(policy, key) {
				names = append(names, name)
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	sort.Strings(names)
	return names, stored, nil
}

func inUse(name, key, action string, policies []string) error {
	return apierrors.NewForbidden(flomesh.Resource("clusters"), name,
		fmt.Errorf("%s: its key %q is a target of %s (%s); remove the key from their spec.targets first",
			action, key, clusterrefs.Policies(len(policies)), clusterrefs.ListNames(policies)))
}

func inFlight(name, key, action string, pending []clusterrefs.Pending) error {
	policies := sets.New[string]()
	var clears time.Time
	for _, q := range pending {
		policies.Insert(q.Policy)
		if q.Expires.After(clears) {
			clears = q.Expires.Time
		}
	}
	return apierrors.NewConflict(flomesh.Resource("clusters"), name,
		fmt.Errorf("%s: its key %q was just added to the targets of %s (%s), whose write may not be stored yet; "+
			"try again (if that write failed, this clears at %s)",
			action, key, clusterrefs.Policies(policies.Len()), clusterrefs.ListNames(sets.List(policies)),
			clears.UTC().Format(time.RFC3339)))
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
