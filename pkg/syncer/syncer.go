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

// Package syncer makes the member clusters of the federation match the
// control plane. It reads Clusters, GlobalTrafficPolicies and the computed
// ServiceImports through the aggregated API, and writes into every member
// the imports of the services the other members export, the policies of
// the services it imports or hosts, the Ingresses that expose its own
// exports, and the Valid and Conflict conditions of those exports.
//
// Every member has its own queue of services and its own workers, so a
// member that does not answer delays nobody else. Work is keyed by service:
// reconciling namespace/name in a member computes (desired.go) what the
// member should hold for that service, compares it with the member's
// caches, and writes only what differs, by server-side apply with the
// field manager fedmesh-syncer. The syncer labels what it creates and
// never updates or deletes an object without its label.
package syncer

import (
	"context"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"math"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	fedlisters "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/membercrds"
	"github.com/fedmesh/fedmesh/pkg/members"
)

var labelsEverything = labels.Everything()

// Options tune the syncer.
type Options struct {
	// IngressClass is the class of the Ingresses that expose exports; empty
	// leaves it to the member's default class.
	IngressClass string
	// Workers is the number of workers of each member: how many services
	// are written into it at once, and so how far a member that joins is
	// written at the member's own speed rather than at one round trip a
	// write.
	Workers int
	// MemberQPS and MemberBurst are the ceiling of each member's client
	// rate, which a member's 429s lower for a while (adaptiveLimiter).
	MemberQPS   float64
	MemberBurst int
	// ResyncPeriod is how often every cache replays its objects, so that
	// a missed change is eventually noticed. Resyncs write nothing when
	// the members match.
	ResyncPeriod time.Duration
	// MaxRetryDelay caps the backoff of a failing service in a member, and
	// so how long a member that comes back waits to catch up.
	MaxRetryDelay time.Duration
	// MemberTimeout bounds every request to a member.
	MemberTimeout time.Duration
	// CleanupTimeout is how long the syncer tries to remove what it wrote
	// into a member removed from the federation.
	CleanupTimeout time.Duration
	// Namespaces says which namespaces federate, as fedmesh-apiserver is
	// told: the syncer writes nothing into the others.
	Namespaces imports.Namespaces
	// Members says how members are reached, as fedmesh-apiserver is told.
	Members members.Options
}

// Syncer writes the federation's state into the members.
type Syncer struct {
	opts    Options
	crds    []membercrds.CRD
	factory fedinformers.SharedInformerFactory
	// secretFactory watches the namespace of member credentials; nil
	// without a core client.
	secretFactory kubeinformers.SharedInformerFactory
	secrets       members.Secrets

	clusters fedlisters.ClusterLister
	imports  fedlisters.ServiceImportLister
	policies fedlisters.GlobalTrafficPolicyLister
	synced   []cache.InformerSynced

	// clusterQueue holds the names of the Clusters whose connection to
	// reconcile, apart from the members' own queues so that connecting
	// to a slow member never waits on a service.
	clusterQueue workqueue.TypedRateLimitingInterface[string]

	mu      sync.RWMutex
	members map[string]*member
	// cleanups tracks the removals of departed members, which Run waits
	// for so that no write outlives it.
	cleanups sync.WaitGroup
}

// New returns a syncer over the control plane's flomesh.io API. kube, the
// control plane's core API, reads the members' credentials Secrets; nil
// reads none.
func New(client versioned.Interface, kube kubernetes.Interface, opts Options) (*Syncer, error) {
	crds, err := membercrds.Load()
	if err != nil {
		return nil, err
	}
	registerMetrics()
	// The kubeconfigs of the Clusters are read, so they are kept; the
	// managed fields of everything are not.
	factory := fedinformers.NewSharedInformerFactoryWithOptions(client, opts.ResyncPeriod, fedinformers.WithTransform(dropManagedFields))
	fl := factory.Flomesh().V1alpha1()
	s := &Syncer{
		opts:     opts,
		crds:     crds,
		factory:  factory,
		clusters: fl.Clusters().Lister(),
		imports:  fl.ServiceImports().Lister(),
		policies: fl.GlobalTrafficPolicies().Lister(),
		synced: []cache.InformerSynced{
			fl.Clusters().Informer().HasSynced,
			fl.ServiceImports().Informer().HasSynced,
			fl.GlobalTrafficPolicies().Informer().HasSynced,
		},
		clusterQueue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, opts.MaxRetryDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "clusters"}),
		members: map[string]*member{},
	}
	_, _ = fl.Clusters().Informer().AddEventHandler(handler(func(obj metav1.Object) { s.clusterQueue.Add(obj.GetName()) }))
	everywhere := handler(func(obj metav1.Object) { s.enqueueEverywhere(serviceKey{obj.GetNamespace(), obj.GetName()}) })
	_, _ = fl.ServiceImports().Informer().AddEventHandler(everywhere)
	_, _ = fl.GlobalTrafficPolicies().Informer().AddEventHandler(everywhere)
	if kube != nil {
		s.secretFactory = kubeinformers.NewSharedInformerFactoryWithOptions(kube, opts.ResyncPeriod,
			kubeinformers.WithNamespace(opts.Members.SecretsNamespace))
		secrets := s.secretFactory.Core().V1().Secrets()
		s.secrets = secrets.Lister().Secrets(opts.Members.SecretsNamespace)
		s.synced = append(s.synced, secrets.Informer().HasSynced)
		// A Secret that changes changes the connection of the Clusters
		// that name it.
		_, _ = secrets.Informer().AddEventHandler(handler(func(obj metav1.Object) {
			list, err := s.clusters.List(labelsEverything)
			if err != nil {
				return
			}
			for _, name := range members.ClustersUsing(list, obj.GetName()) {
				s.clusterQueue.Add(name)
			}
		}))
	}
	return s, nil
}

// Run syncs the members until ctx is done, then stops every member and
// returns once no write is in flight.
func (s *Syncer) Run(ctx context.Context) {
	defer utilruntime.HandleCrash()
	logger := klog.FromContext(ctx)
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	if s.secretFactory != nil {
		s.secretFactory.Start(ctx.Done())
		defer s.secretFactory.Shutdown()
	}
	logger.Info("Waiting for the control plane's caches")
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		s.clusterQueue.ShutDown()
		return
	}
	logger.Info("Control plane caches synced; syncing members")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wait.UntilWithContext(ctx, func(ctx context.Context) {
			for s.processCluster(ctx) {
			}
		}, time.Second)
	}()
	<-ctx.Done()
	s.clusterQueue.ShutDown()
	wg.Wait()

	s.mu.Lock()
	members := s.members
	s.members = map[string]*member{}
	s.mu.Unlock()
	for _, m := range members {
		m.stop()
	}
	s.cleanups.Wait()
}

func (s *Syncer) processCluster(ctx context.Context) bool {
	name, quit := s.clusterQueue.Get()
	if quit {
		return false
	}
	defer s.clusterQueue.Done(name)
	s.syncCluster(ctx, name)
	s.clusterQueue.Forget(name)
	return true
}

// syncCluster makes the member connection of a Cluster match it: a new
// Cluster gets one, a changed kubeconfig or key a new one, and a deleted
// Cluster loses it after what the syncer wrote into it is removed.
func (s *Syncer) syncCluster(ctx context.Context, name string) {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "cluster", name)
	ctx = klog.NewContext(ctx, logger)
	cluster, err := s.clusters.Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		utilruntime.HandleError(err)
		return
	}
	gone := cluster == nil || cluster.DeletionTimestamp != nil
	var target members.Target
	if !gone {
		target = members.Resolve(cluster, s.secrets, s.opts.Members)
	}

	s.mu.Lock()
	old := s.members[name]
	var fresh *member
	switch {
	case gone:
		delete(s.members, name)
	case old == nil || !old.target.Same(target):
		fresh = newMember(cluster, target, s.opts)
		if fresh.err != nil {
			fresh.lastUsable = old.usable()
		}
		s.members[name] = fresh
	case old.synced.Load() && !old.ready.Load() && apimeta.IsStatusConditionTrue(cluster.Status.Conditions, "Ready"):
		// A member turning Ready again after an outage gets fresh
		// caches. Its old ones resume their watches only at the end of
		// client-go's back-off, up to 30 s after the member is back;
		// meanwhile they hold what the member held before, and the
		// syncer, which skips a write its cache says is done, left the
		// member's imports, policies and Ingresses stale that long
		// (measured by the fault suite, test/chaos). A fresh member lists
		// at once and then queues every service of the member.
		logger.Info("Member is Ready again; reconnecting with fresh caches")
		fresh = newMember(cluster, target, s.opts)
		s.members[name] = fresh
	}
	s.mu.Unlock()

	if old != nil && (gone || fresh != nil) {
		old.stop()
		memberSynced.WithLabelValues(old.name).Set(0)
		if gone {
			logger.Info("Cluster left the federation; removing what was written into it")
			s.cleanups.Add(1)
			// A Cluster whose credentials went just before it (unjoin
			// deletes both) is cleaned with those it last connected with.
			departed := old.usable()
			go func() {
				defer s.cleanups.Done()
				if departed != nil {
					s.cleanup(ctx, departed)
				}
			}()
		}
	}
	// A member that joins, leaves or changes key changes what the others
	// import only through the control plane's imports, whose changes
	// queue their services everywhere (New): the other members' queues
	// are not filled with every service, which at 10,000 exports put
	// seconds of no-op reconciles in front of their next real change
	// while the new member was being written. The new member queues its
	// own services once its caches have synced (runMember).
	switch {
	case fresh != nil:
		logger.Info("Connecting to member", "key", fresh.key)
		memberCtx, cancel := context.WithCancel(ctx)
		fresh.cancel = cancel
		go s.runMember(memberCtx, fresh)
	case gone:
	default:
		// A member turning Ready again after an outage can catch up at
		// once rather than at the end of its backoff. Other status writes
		// (the heartbeat, the export count that every export changes) must
		// not re-queue every service of the member: at 10,000 exports that
		// backlog put seconds in front of the next real change.
		ready := apimeta.IsStatusConditionTrue(cluster.Status.Conditions, "Ready")
		if m := s.member(name); m != nil && m.ready.Swap(ready) != ready && ready && m.synced.Load() {
			s.enqueueAll(m)
		}
	}
}

func (s *Syncer) member(name string) *member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.members[name]
}

// runMember checks (and upgrades) the CRDs of a member, starts its caches,
// and runs its workers until ctx is done (the member is stopped).
func (s *Syncer) runMember(ctx context.Context, m *member) {
	defer close(m.done)
	defer m.queue.ShutDown()
	logger := klog.FromContext(ctx)
	if m.err != nil {
		logger.Error(m.err, "Cannot connect to member")
		<-ctx.Done()
		return
	}
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: s.opts.MaxRetryDelay}
	for {
		err := s.upgradeCRDs(ctx, m)
		if err == nil {
			break
		}
		logger.Info("The member does not serve fedmesh's CRDs yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
	m.addHandlers(s)
	m.startInformers(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), m.hasSynced...) {
		return
	}
	m.synced.Store(true)
	memberSynced.WithLabelValues(m.name).Set(1)
	logger.Info("Member caches synced")
	s.enqueueAll(m)

	var wg sync.WaitGroup
	for range max(s.opts.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.processService(ctx, m) {
			}
		}()
	}
	<-ctx.Done()
	m.queue.ShutDown()
	wg.Wait()
}

func (s *Syncer) processService(ctx context.Context, m *member) bool {
	k, quit := m.queue.Get()
	if quit {
		return false
	}
	defer m.queue.Done(k)
	if err := s.reconcile(ctx, m, k); err != nil {
		reconcilesTotal.WithLabelValues(m.name, "error").Inc()
		if ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Reconciling failed; retrying", "service", k.Namespace+"/"+k.Name, "err", err)
			m.queue.AddRateLimited(k)
		}
		return true
	}
	reconcilesTotal.WithLabelValues(m.name, "success").Inc()
	m.queue.Forget(k)
	return true
}

// enqueueEverywhere queues a service in every member.
func (s *Syncer) enqueueEverywhere(k serviceKey) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.members {
		m.queue.Add(k)
	}
}

// enqueueAll queues in a member every service it may have to write or
// delete something for: those of the control plane's imports and
// policies, those it exports, and those of what the syncer wrote into it.
func (s *Syncer) enqueueAll(m *member) {
	keys := map[serviceKey]bool{}
	if list, err := s.imports.List(labelsEverything); err == nil {
		for _, o := range list {
			keys[serviceKey{o.Namespace, o.Name}] = true
		}
	}
	if list, err := s.policies.List(labelsEverything); err == nil {
		for _, o := range list {
			keys[serviceKey{o.Namespace, o.Name}] = true
		}
	}
	for _, k := range m.exportKeys() {
		keys[k] = true
	}
	owned := labels.SelectorFromSet(ownedLabels())
	if list, err := m.imports.List(owned); err == nil {
		for _, o := range list {
			keys[serviceKey{o.Namespace, o.Name}] = true
		}
	}
	if list, err := m.policies.List(owned); err == nil {
		for _, o := range list {
			keys[serviceKey{o.Namespace, o.Name}] = true
		}
	}
	if list, err := m.ingresses.List(owned); err == nil {
		for _, o := range list {
			if e := o.Labels[ExportLabel]; e != "" {
				keys[serviceKey{o.Namespace, e}] = true
			}
		}
	}
	for k := range keys {
		m.queue.Add(k)
	}
}

// enqueueNamespace queues in a member every service of a namespace that
// the federation may want written there: those of the control plane's
// imports and policies in the namespace.
func (s *Syncer) enqueueNamespace(m *member, namespace string) {
	if list, err := s.imports.ServiceImports(namespace).List(labelsEverything); err == nil {
		for _, o := range list {
			m.queue.Add(serviceKey{o.Namespace, o.Name})
		}
	}
	if list, err := s.policies.GlobalTrafficPolicies(namespace).List(labelsEverything); err == nil {
		for _, o := range list {
			m.queue.Add(serviceKey{o.Namespace, o.Name})
		}
	}
}

// exportKeys lists the services the member exports, or none before its
// caches synced.
func (m *member) exportKeys() []serviceKey {
	if !m.synced.Load() {
		return nil
	}
	list, err := m.exports.List(labelsEverything)
	if err != nil {
		return nil
	}
	keys := make([]serviceKey, 0, len(list))
	for _, e := range list {
		keys = append(keys, serviceKey{e.Namespace, e.Name})
	}
	return keys
}

// Members returns the names of the members the syncer is connected to.
func (s *Syncer) Members() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.members))
	for n := range s.members {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
