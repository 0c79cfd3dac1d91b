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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
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
	// endpoints are withdrawn from the imports, for services whose
	// GlobalTrafficPolicy does not set spec.unavailableGraceSeconds.
	UnavailableGrace time.Duration
	// ProbeInterval is how often a Ready member is probed. A member that is
	// not Ready is probed again sooner, the delay doubling from
	// probeRetryBase up to ProbeInterval.
	ProbeInterval time.Duration
	// HeartbeatInterval bounds how often an unchanged status is rewritten.
	HeartbeatInterval time.Duration
	// ProbeWorkers is how many members are probed at once; 0 means
	// DefaultProbeWorkers. A member that does not answer holds a worker
	// for the probe's timeout, so there must be more workers than members
	// expected to be unreachable at once, or the others are probed late.
	ProbeWorkers int
	// Members says how members are reached: where their credentials
	// Secrets are, and which unsafe kubeconfig features to accept.
	Members members.Options
	// Namespaces says which namespaces federate.
	Namespaces imports.Namespaces
}

// DefaultProbeWorkers is the number of probe workers of DefaultOptions.
const DefaultProbeWorkers = 16

// DefaultOptions are the options of a production server.
func DefaultOptions() Options {
	return Options{UnavailableGrace: 30 * time.Second, ProbeInterval: 2 * time.Second, HeartbeatInterval: 30 * time.Second,
		ProbeWorkers: DefaultProbeWorkers, Members: members.DefaultOptions()}
}

// probeRetryBase is the first delay before a failed probe is retried; it
// doubles on each failure up to the probe interval, so that a member that
// failed once is soon looked at again, and one that keeps failing is
// probed as often as a healthy one.
const probeRetryBase = 100 * time.Millisecond

// Controller follows the Clusters of the control plane.
type Controller struct {
	opts     Options
	client   versioned.Interface
	clusters fedlisters.ClusterLister
	// policies give each service its grace (spec.unavailableGraceSeconds).
	policies fedlisters.GlobalTrafficPolicyLister
	// secrets reads the credentials Secrets Clusters name; nil without a
	// control plane.
	secrets members.Secrets
	synced  []cache.InformerSynced
	sink    Sink
	clock   clock.Clock
	// newClients builds the clients of a member from its configuration.
	newClients func(*rest.Config) (kubernetes.Interface, versioned.Interface, error)

	// clusterQueue holds names of Clusters whose connection to reconcile;
	// serviceQueue holds namespace/name of services whose import to
	// recompute. Separate queues keep a burst of exports from delaying a
	// Cluster's deletion, and the reverse.
	clusterQueue workqueue.TypedRateLimitingInterface[string]
	serviceQueue workqueue.TypedRateLimitingInterface[[2]string]
	// probeQueue holds names of Clusters whose member to probe. After each
	// probe the name comes back: at the probe interval when the member is
	// Ready, sooner, with backoff, when it is not. The queue hands a name
	// to one worker at a time, so a member is never probed twice at once.
	probeQueue workqueue.TypedRateLimitingInterface[string]

	mu      sync.RWMutex
	members map[string]*member

	// initial follows whether the imports are complete since the start.
	initial initialSync
}

// New returns a controller over the Clusters of factory, writing their
// status through client and the imports into sink. secrets, the informer
// of the namespace of member credentials, is nil where fedmesh runs
// without a control plane.
func New(client versioned.Interface, factory fedinformers.SharedInformerFactory, secrets corev1informers.SecretInformer, sink Sink, opts Options) *Controller {
	if opts.ProbeWorkers <= 0 {
		opts.ProbeWorkers = DefaultProbeWorkers
	}
	informer := factory.Flomesh().V1alpha1().Clusters()
	policies := factory.Flomesh().V1alpha1().GlobalTrafficPolicies()
	c := &Controller{
		opts:         opts,
		client:       client,
		clusters:     informer.Lister(),
		policies:     policies.Lister(),
		synced:       []cache.InformerSynced{informer.Informer().HasSynced, policies.Informer().HasSynced},
		sink:         sink,
		clock:        clock.RealClock{},
		newClients:   newClients,
		clusterQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "clusters"}),
		serviceQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[[2]string](), workqueue.TypedRateLimitingQueueConfig[[2]string]{Name: "serviceimports"}),
		probeQueue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](probeRetryBase, opts.ProbeInterval),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "memberprobes"}),
		members: map[string]*member{},
	}
	_, _ = informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.enqueueCluster(obj) },
		UpdateFunc: func(_, obj interface{}) { c.enqueueCluster(obj) },
		DeleteFunc: func(obj interface{}) { c.enqueueCluster(obj) },
	})
	// A policy governs the service of its namespace and name: a grace
	// that appears, changes or goes recomputes that import at once.
	_, _ = policies.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { c.enqueuePolicy(obj) },
		UpdateFunc: func(old, obj interface{}) {
			o, ok1 := old.(*v1alpha1.GlobalTrafficPolicy)
			n, ok2 := obj.(*v1alpha1.GlobalTrafficPolicy)
			if ok1 && ok2 && ptr.Equal(o.Spec.UnavailableGraceSeconds, n.Spec.UnavailableGraceSeconds) {
				return
			}
			c.enqueuePolicy(obj)
		},
		DeleteFunc: func(obj interface{}) { c.enqueuePolicy(obj) },
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

// enqueuePolicy queues the service a GlobalTrafficPolicy governs.
func (c *Controller) enqueuePolicy(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if a, err := meta.Accessor(obj); err == nil {
		c.enqueueService(a.GetNamespace(), a.GetName())
	}
}

func (c *Controller) enqueueService(namespace, name string) {
	c.serviceQueue.Add([2]string{namespace, name})
}

// Run runs the controller until ctx is done: one worker for the Clusters,
// one for the imports, and opts.ProbeWorkers for the probes.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer c.clusterQueue.ShutDown()
	defer c.serviceQueue.ShutDown()
	defer c.probeQueue.ShutDown()
	logger := klog.FromContext(ctx)
	logger.Info("Starting clusterset controller")
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	c.beginInitialSync()
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processCluster(ctx) {
		}
	}, time.Second)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processService() {
		}
	}, time.Second)
	for range c.opts.ProbeWorkers {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.processProbe(ctx) {
			}
		}, time.Second)
	}
	<-ctx.Done()
	logger.Info("Stopping clusterset controller")
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
	ctx = klog.NewContext(ctx, klog.LoggerWithValues(klog.FromContext(ctx), "cluster", name))
	// The worker alone decides between a retry with backoff and a clean
	// slate, as in sample-controller: a sync that re-queued itself and was
	// then forgotten would never back off.
	if err := c.syncCluster(ctx, name); err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing Cluster; will retry")
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
	logger := klog.FromContext(ctx)
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
			fresh = c.newMember(ctx, cluster, target)
		}
	}
	c.mu.Lock()
	switch {
	case cluster == nil || cluster.DeletionTimestamp != nil:
		delete(c.members, name)
	case fresh != nil:
		c.members[name] = fresh
	}
	c.mu.Unlock()

	if old != nil && (fresh != nil || cluster == nil || cluster.DeletionTimestamp != nil) {
		old.stop()
		logger.Info("Dropped member connection")
		// The services it exported lose (or, reconnected, regain) its
		// endpoints.
		for _, k := range old.exportKeys() {
			c.enqueueService(k[0], k[1])
		}
	}
	if fresh != nil {
		logger.Info("Connecting to member", "key", fresh.info.Key)
		// At once: the time from a Cluster's registration to Ready is
		// mostly this first probe.
		c.probeQueue.Add(name)
	}
	return nil
}

func (c *Controller) processService() bool {
	k, quit := c.serviceQueue.Get()
	if quit {
		return false
	}
	defer c.serviceQueue.Done(k)
	c.initial.recomputing.Add(1)
	defer c.initial.recomputing.Add(-1)
	c.recompute(k[0], k[1])
	c.serviceQueue.Forget(k)
	return true
}

// recompute rebuilds the import of one service from every member's
// export of it that is available under the service's grace: work
// proportional to the members, not to the federation's exports. When a
// member's grace is running, the service is queued again for the moment
// it runs out, so that a withdrawal is on time without any polling.
func (c *Controller) recompute(namespace, name string) {
	now := c.clock.Now()
	c.mu.RLock()
	var exports []imports.Export
	for _, m := range c.members {
		if e, ok := m.export(namespace, name); ok {
			exports = append(exports, e)
		}
	}
	c.mu.RUnlock()
	exports, next := imports.Available(exports, c.grace(namespace, name), now)
	if !next.IsZero() {
		c.serviceQueue.AddAfter([2]string{namespace, name}, next.Sub(now))
	}
	if imp := imports.Compute(c.opts.Namespaces, namespace, name, exports); imp != nil {
		c.sink.Set(imp, imports.Equal)
	} else {
		c.sink.Delete(namespace, name)
	}
}

// grace returns how long the endpoints of namespace/name stay after their
// member stops being Ready: its policy's, else the server's.
func (c *Controller) grace(namespace, name string) time.Duration {
	var seconds *int32
	if p, err := c.policies.GlobalTrafficPolicies(namespace).Get(name); err == nil {
		seconds = p.Spec.UnavailableGraceSeconds
	}
	return imports.Grace(seconds, c.opts.UnavailableGrace)
}

// probeOutcome says when a member is probed next.
type probeOutcome int

const (
	// probeDropped: the Cluster has no member any more; it is not probed
	// again, unless the Cluster gets a new one.
	probeDropped probeOutcome = iota
	// probeReady: the member is Ready, and probed again after the probe
	// interval.
	probeReady
	// probeFailed: the member is not Ready, or its status could not be
	// written; it is probed again after the queue's backoff.
	probeFailed
)

func (c *Controller) processProbe(ctx context.Context) bool {
	name, quit := c.probeQueue.Get()
	if quit {
		return false
	}
	defer c.probeQueue.Done(name)
	ctx = klog.NewContext(ctx, klog.LoggerWithValues(klog.FromContext(ctx), "cluster", name))
	outcome, err := c.syncProbe(ctx, name)
	c.settleProbed(name)
	switch {
	case apierrors.IsConflict(err):
		// The cache has not seen the Cluster's latest write yet; the
		// retry will have.
		klog.FromContext(ctx).V(2).Info("Writing Cluster status; will retry", "err", err)
	case err != nil:
		utilruntime.HandleErrorWithContext(ctx, err, "Probing member; will retry")
	}
	switch outcome {
	case probeDropped:
		c.probeQueue.Forget(name)
	case probeReady:
		c.probeQueue.Forget(name)
		c.probeQueue.AddAfter(name, c.opts.ProbeInterval)
	case probeFailed:
		c.probeQueue.AddRateLimited(name)
	}
	return true
}

// syncProbe probes the member of a Cluster, follows a change of whether it
// serves endpoints, and writes its status.
func (c *Controller) syncProbe(ctx context.Context, name string) (probeOutcome, error) {
	c.mu.RLock()
	m := c.members[name]
	c.mu.RUnlock()
	if m == nil {
		return probeDropped, nil
	}
	ready := m.probe(ctx, c.enqueueService)
	// Each import follows the member's readiness under its own grace:
	// a change of readiness recomputes every service the member exports,
	// and each recompute schedules the end of its grace.
	if since := m.notReady(); !since.Equal(m.notReadyInImports) {
		m.notReadyInImports = since
		klog.FromContext(ctx).Info("Member readiness changed; recomputing its imports", "ready", since.IsZero())
		for _, k := range m.exportKeys() {
			c.enqueueService(k[0], k[1])
		}
	}
	if err := c.writeStatus(ctx, m); err != nil {
		return probeFailed, err
	}
	if !ready {
		return probeFailed, nil
	}
	return probeReady, nil
}

// writeStatus writes the member's health to its Cluster's status when it
// changed, or at the heartbeat interval.
func (c *Controller) writeStatus(ctx context.Context, m *member) error {
	c.mu.RLock()
	current := c.members[m.name] == m
	c.mu.RUnlock()
	if !current {
		return nil
	}
	cluster, err := c.clusters.Get(m.name)
	if apierrors.IsNotFound(err) {
		// Going: syncCluster drops the member.
		return nil
	} else if err != nil {
		return fmt.Errorf("reading Cluster %s from the cache: %w", m.name, err)
	}
	now := c.clock.Now()
	m.mu.Lock()
	cond, version, heartbeat := m.ready, m.version, m.heartbeat
	m.mu.Unlock()
	exportCount := int32(m.exportCount())

	updated := cluster.DeepCopy()
	cond.ObservedGeneration = cluster.Generation
	// Used only if the condition changes status.
	cond.LastTransitionTime = metav1.NewTime(now)
	changed := meta.SetStatusCondition(&updated.Status.Conditions, cond)
	if updated.Status.KubernetesVersion != version || updated.Status.ExportCount != exportCount {
		changed = true
	}
	updated.Status.KubernetesVersion = version
	updated.Status.ExportCount = exportCount
	if !heartbeat.IsZero() {
		updated.Status.LastHeartbeatTime = &metav1.Time{Time: heartbeat}
	}
	if !changed && now.Sub(m.statusWritten) < c.opts.HeartbeatInterval {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.client.FlomeshV1alpha1().Clusters().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing the status of Cluster %s: %w", m.name, err)
	}
	m.statusWritten = now
	return nil
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
