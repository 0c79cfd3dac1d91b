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
// Package clusterset keeps a connection to every member cluster of the
// federation: clients built from each Cluster's kubeconfig, watch-fed caches
// of the member's ServiceExports and Services, and the member's health,
// written to Cluster.status. From those caches it computes the
// ServiceImports the API serves, one service at a time.
package clusterset

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	fedlisters "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// Sink receives the computed ServiceImports.
type Sink interface {
	Set(obj *flomesh.ServiceImport, equal func(a, b *flomesh.ServiceImport) bool) bool
	Delete(namespace, name string) bool
}

// Options tune the controller.
type Options struct {
	// UnavailableGrace is how long a member may be not Ready before its
	// endpoints are withdrawn from the imports.
	UnavailableGrace time.Duration
	// ProbeInterval is how often every member is probed.
	ProbeInterval time.Duration
	// HeartbeatInterval bounds how often an unchanged status is rewritten.
	HeartbeatInterval time.Duration
	// Members says how members are reached: where their credentials
	// Secrets are, and which unsafe kubeconfig features to accept.
	Members members.Options
	// Namespaces says which namespaces federate.
	Namespaces imports.Namespaces
}

// DefaultOptions are the options of a production server.
func DefaultOptions() Options {
	return Options{UnavailableGrace: 30 * time.Second, ProbeInterval: 2 * time.Second, HeartbeatInterval: 30 * time.Second,
		Members: members.DefaultOptions()}
}

// Controller follows the Clusters of the control plane.
type Controller struct {
	opts     Options
	client   versioned.Interface
	clusters fedlisters.ClusterLister
	// secrets reads the credentials Secrets Clusters name; nil without a
	// control plane.
	secrets members.Secrets
	synced  []cache.InformerSynced
	sink    Sink

	// clusterQueue holds names of Clusters whose connection to reconcile;
	// serviceQueue holds namespace/name of services whose import to
	// recompute. Separate queues keep a burst of exports from delaying a
	// Cluster's deletion, and the reverse.
	clusterQueue workqueue.TypedRateLimitingInterface[string]
	serviceQueue workqueue.TypedRateLimitingInterface[[2]string]

	mu      sync.RWMutex
	members map[string]*member
	// written remembers the status last written per Cluster, so unchanged
	// status is rewritten only at the heartbeat interval. A Cluster's
	// entry goes with its member.
	written map[string]time.Time
	ctx     context.Context
}

// New returns a controller over the Clusters of factory, writing their
// status through client and the imports into sink. secrets, the informer
// of the namespace of member credentials, is nil where fedmesh runs
// without a control plane.
func New(client versioned.Interface, factory fedinformers.SharedInformerFactory, secrets corev1informers.SecretInformer, sink Sink, opts Options) *Controller {
	informer := factory.Flomesh().V1alpha1().Clusters()
	c := &Controller{
		opts:         opts,
		client:       client,
		clusters:     informer.Lister(),
		synced:       []cache.InformerSynced{informer.Informer().HasSynced},
		sink:         sink,
		clusterQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "clusters"}),
		serviceQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[[2]string](), workqueue.TypedRateLimitingQueueConfig[[2]string]{Name: "serviceimports"}),
		members:      map[string]*member{},
		written:      map[string]time.Time{},
	}
	_, _ = informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.enqueueCluster(obj) },
		UpdateFunc: func(_, obj interface{}) { c.enqueueCluster(obj) },
		DeleteFunc: func(obj interface{}) { c.enqueueCluster(obj) },
	})
	if secrets != nil {
		c.secrets = secrets.Lister().Secrets(opts.Members.SecretsNamespace)
		c.synced = append(c.synced, secrets.Informer().HasSynced)
		// A new, changed or deleted Secret changes the connection of the
		// Clusters that name it.
		_, _ = secrets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { c.enqueueClustersOf(obj) },
			UpdateFunc: func(_, obj interface{}) { c.enqueueClustersOf(obj) },
			DeleteFunc: func(obj interface{}) { c.enqueueClustersOf(obj) },
		})
	}
	return c
}

// enqueueClustersOf queues the Clusters whose credentials are the Secret obj.
func (c *Controller) enqueueClustersOf(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	secret, err := meta.Accessor(obj)
	if err != nil || secret.GetNamespace() != c.opts.Members.SecretsNamespace {
		return
	}
	clusters, err := c.clusters.List(labels.Everything())
	if err != nil {
		return
	}
	for _, name := range members.ClustersUsing(clusters, secret.GetName()) {
		c.clusterQueue.Add(name)
	}
}

func (c *Controller) enqueueCluster(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if a, err := meta.Accessor(obj); err == nil {
		c.clusterQueue.Add(a.GetName())
	}
}

func (c *Controller) enqueueService(namespace, name string) {
	c.serviceQueue.Add([2]string{namespace, name})
}

// Run runs the controller until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrash()
	defer c.clusterQueue.ShutDown()
	defer c.serviceQueue.ShutDown()
	c.ctx = ctx
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processCluster(ctx) {
		}
	}, time.Second)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processService() {
		}
	}, time.Second)
	wait.UntilWithContext(ctx, c.probeAll, c.opts.ProbeInterval)
	c.mu.Lock()
	for _, m := range c.members {
		m.stop()
	}
	c.mu.Unlock()
}

func (c *Controller) processCluster(ctx context.Context) bool {
	name, quit := c.clusterQueue.Get()
	if quit {
		return false
	}
	defer c.clusterQueue.Done(name)
	// The worker alone decides between a retry with backoff and a clean
	// slate, as in sample-controller: a sync that re-queued itself and was
	// then forgotten would never back off.
	if err := c.syncCluster(ctx, name); err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing Cluster; will retry", "cluster", name)
		c.clusterQueue.AddRateLimited(name)
		return true
	}
	c.clusterQueue.Forget(name)
	return true
}

// syncCluster makes the connection of a Cluster match it: a new Cluster
// gets one, a changed kubeconfig or gateway a new one, a deleted Cluster
// loses it, and its endpoints leave the imports at once.
func (c *Controller) syncCluster(ctx context.Context, name string) error {
	cluster, err := c.clusters.Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Cluster %s from the cache: %w", name, err)
	}
	// Only this queue's single worker changes c.members, so what is read
	// here still holds below. The new member is built outside the lock:
	// resolving a gateway's name may take seconds, and every recompute
	// takes the lock too.
	c.mu.RLock()
	old := c.members[name]
	c.mu.RUnlock()
	var fresh *member
	// A new connection when its credentials or key change (members'
	// rule), and a new member also when the gateway the imports carry
	// changes.
	if cluster != nil && cluster.DeletionTimestamp == nil {
		target := members.Resolve(cluster, c.secrets, c.opts.Members)
		if old == nil || !old.target.Same(target) || !equality.Semantic.DeepEqual(old.spec, cluster.Spec) {
			fresh = newMember(ctx, cluster, target)
		}
	}
	c.mu.Lock()
	switch {
	case cluster == nil || cluster.DeletionTimestamp != nil:
		delete(c.members, name)
		delete(c.written, name)
	case fresh != nil:
		c.members[name] = fresh
	}
	c.mu.Unlock()

	if old != nil && (fresh != nil || cluster == nil || cluster.DeletionTimestamp != nil) {
		old.stop()
		klog.InfoS("Dropped member connection", "cluster", name)
		// The services it exported lose (or, reconnected, regain) its
		// endpoints.
		for _, k := range old.exportKeys() {
			c.enqueueService(k[0], k[1])
		}
	}
	if fresh != nil {
		klog.InfoS("Connecting to member", "cluster", name, "key", fresh.info.Key)
		go c.probe(fresh)
	}
	return nil
}

func (c *Controller) processService() bool {
	k, quit := c.serviceQueue.Get()
	if quit {
		return false
	}
	defer c.serviceQueue.Done(k)
	c.recompute(k[0], k[1])
	c.serviceQueue.Forget(k)
	return true
}

// recompute rebuilds the import of one service from every serving
// member's export of it: work proportional to the members, not to the
// federation's exports.
func (c *Controller) recompute(namespace, name string) {
	now := time.Now()
	c.mu.RLock()
	var exports []imports.Export
	for _, m := range c.members {
		if !m.serving(c.opts.UnavailableGrace, now) {
			continue
		}
		if e, ok := m.export(namespace, name); ok {
			exports = append(exports, e)
		}
	}
	c.mu.RUnlock()
	if imp := imports.Compute(c.opts.Namespaces, namespace, name, exports); imp != nil {
		c.sink.Set(imp, imports.Equal)
	} else {
		c.sink.Delete(namespace, name)
	}
}

func (c *Controller) probeAll(ctx context.Context) {
	c.mu.RLock()
	members := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		members = append(members, m)
	}
	c.mu.RUnlock()
	for _, m := range members {
		// Each member is probed on its own: a dead one, waiting for its
		// timeout, never delays the others.
		go c.probe(m)
	}
}

// probe probes a member, follows a change of whether it serves endpoints,
// and writes its status.
func (c *Controller) probe(m *member) {
	if !m.probing.CompareAndSwap(false, true) {
		return
	}
	defer m.probing.Store(false)
	m.probe(c.enqueueService)
	// The grace runs out between probes as well as during one: compare
	// with what the imports were last computed with.
	serving := m.serving(c.opts.UnavailableGrace, time.Now())
	if serving != m.lastServing.Swap(serving) {
		klog.InfoS("Member endpoints changed", "cluster", m.name, "serving", serving)
		for _, k := range m.exportKeys() {
			c.enqueueService(k[0], k[1])
		}
	}
	c.writeStatus(m)
}

// writeStatus writes the member's health to its Cluster's status when it
// changed, or at the heartbeat interval.
func (c *Controller) writeStatus(m *member) {
	c.mu.RLock()
	current := c.members[m.name] == m
	last := c.written[m.name]
	c.mu.RUnlock()
	if !current {
		return
	}
	cluster, err := c.clusters.Get(m.name)
	if err != nil {
		return
	}
	m.mu.Lock()
	cond, version, heartbeat := m.ready, m.version, m.heartbeat
	m.mu.Unlock()
	exportCount := int32(m.exportCount())

	updated := cluster.DeepCopy()
	cond.ObservedGeneration = cluster.Generation
	changed := meta.SetStatusCondition(&updated.Status.Conditions, cond)
	if updated.Status.KubernetesVersion != version || updated.Status.ExportCount != exportCount {
		changed = true
	}
	updated.Status.KubernetesVersion = version
	updated.Status.ExportCount = exportCount
	if !heartbeat.IsZero() {
		updated.Status.LastHeartbeatTime = &metav1.Time{Time: heartbeat}
	}
	if !changed && time.Since(last) < c.opts.HeartbeatInterval {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if _, err := c.client.FlomeshV1alpha1().Clusters().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		klog.V(2).InfoS("Writing Cluster status", "cluster", m.name, "err", err)
		return
	}
	c.mu.Lock()
	// The Cluster may have gone while its status was written: its entry
	// went with it, and must not come back.
	if c.members[m.name] == m {
		c.written[m.name] = time.Now()
	}
	c.mu.Unlock()
}

// Members returns the names of the connected members, sorted.
func (c *Controller) Members() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := make([]string, 0, len(c.members))
	for n := range c.members {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
