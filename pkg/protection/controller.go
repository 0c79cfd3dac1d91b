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

// Package protection keeps the references from GlobalTrafficPolicies to
// Clusters sound and visible, as kube-controller-manager's pvc-protection
// controller does for the PersistentVolumeClaims of pods:
//
//   - every Cluster carries the finalizer flomesh.io/cluster-protection, and
//     a Cluster being deleted keeps it while a policy targets its key, so a
//     Cluster never goes while a policy names it, even when admission was
//     bypassed or raced;
//   - every policy's status says, per target, whether the key is a
//     registered Cluster, whether that Cluster is Ready and whether it
//     exports the policy's service, and its Resolved condition is False
//     while a target names no live Cluster;
//   - every policy's status says where each member's requests for its
//     service go (status.consumers, computed by pkg/routing, the code
//     fedmesh-gateway runs), and its Routed condition is False while a
//     member has no route (routes.go).
//
// fedmesh's admission plugins (pkg/admission) give the early, friendly
// answers: a policy may name only registered Clusters, and deleting a
// Cluster a policy targets is refused. The finalizer is what holds when they
// are disabled, or when a policy write and a Cluster deletion meet.
package protection

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	listers "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
)

// Finalizer keeps a Cluster while GlobalTrafficPolicies target its key.
const Finalizer = "flomesh.io/cluster-protection"

// FieldManager is the field manager of the policy status the controller
// applies: status.targets and the Resolved condition are its alone.
const FieldManager = "fedmesh-cluster-protection"

// PolicyWrites tells whether a policy write in progress in this server,
// admitted or about to be and not yet stored or failed, names a cluster
// key (globaltrafficpolicy.Writes).
type PolicyWrites interface {
	Naming(key string) bool
}

// Controller puts the protection finalizer on Clusters, removes it from a
// Cluster being deleted once no policy targets it, and writes the status of
// policies.
type Controller struct {
	client versioned.Interface

	clusters     listers.ClusterLister
	clusterIndex cache.Indexer
	policies     listers.GlobalTrafficPolicyLister
	policyIndex  cache.Indexer
	synced       []cache.InformerSynced

	imports *serviceimport.Aggregate
	// importREST lists and watches imports in process, as the API does.
	importREST *serviceimport.REST
	writes     PolicyWrites

	// clusterQueue holds names of Clusters whose finalizer may need a
	// change; policyQueue namespace/names of policies whose status may.
	clusterQueue workqueue.TypedRateLimitingInterface[string]
	policyQueue  workqueue.TypedRateLimitingInterface[string]

	now func() time.Time
}

// NewController returns the controller. It asks the factory for the
// Cluster and policy informers, and adds their indexes: call it before the
// factory starts. writes may be nil, for a server whose policy writes are
// not tracked.
func NewController(client versioned.Interface, factory informers.SharedInformerFactory, imports *serviceimport.Aggregate, writes PolicyWrites) (*Controller, error) {
	clusterInformer := factory.Flomesh().V1alpha1().Clusters()
	policyInformer := factory.Flomesh().V1alpha1().GlobalTrafficPolicies()
	if err := AddIndexers(clusterInformer.Informer(), ClusterIndexers()); err != nil {
		return nil, fmt.Errorf("indexing Clusters by key: %w", err)
	}
	if err := AddIndexers(policyInformer.Informer(), PolicyIndexers()); err != nil {
		return nil, fmt.Errorf("indexing GlobalTrafficPolicies by target: %w", err)
	}
	c := &Controller{
		client:       client,
		clusters:     clusterInformer.Lister(),
		clusterIndex: clusterInformer.Informer().GetIndexer(),
		policies:     policyInformer.Lister(),
		policyIndex:  policyInformer.Informer().GetIndexer(),
		synced:       []cache.InformerSynced{clusterInformer.Informer().HasSynced, policyInformer.Informer().HasSynced},
		imports:      imports,
		importREST:   serviceimport.NewREST(imports, nil),
		writes:       writes,
		clusterQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "cluster_protection"}),
		policyQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "policy_status"}),
		now: time.Now,
	}
	if _, err := clusterInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.clusterAdded,
		UpdateFunc: c.clusterUpdated,
		DeleteFunc: c.clusterDeleted,
	}); err != nil {
		return nil, err
	}
	if _, err := policyInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.policyAdded,
		UpdateFunc: c.policyUpdated,
		DeleteFunc: c.policyDeleted,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run waits for the caches, then runs workers of each queue until ctx is
// done.
func (c *Controller) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	defer c.clusterQueue.ShutDown()
	defer c.policyQueue.ShutDown()

	logger := klog.FromContext(ctx)
	logger.Info("Starting cluster protection controller")
	defer logger.Info("Shutting down cluster protection controller")

	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, c.watchImports, time.Second)
	for range workers {
		go wait.UntilWithContext(ctx, c.runClusterWorker, time.Second)
		go wait.UntilWithContext(ctx, c.runPolicyWorker, time.Second)
	}
	<-ctx.Done()
}

func (c *Controller) runClusterWorker(ctx context.Context) {
	for processNextWorkItem(ctx, c.clusterQueue, c.syncCluster) {
	}
}

func (c *Controller) runPolicyWorker(ctx context.Context) {
	for processNextWorkItem(ctx, c.policyQueue, c.syncPolicy) {
	}
}

// processNextWorkItem deals with one key off the queue. It returns false
// when it's time to quit. The worker alone decides between a retry with
// backoff and forgetting the key's failures.
func processNextWorkItem(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)

	err := sync(ctx, key)
	if err == nil {
		queue.Forget(key)
		return true
	}
	utilruntime.HandleErrorWithContext(ctx, err, "Sync failed", "key", key)
	queue.AddRateLimited(key)
	return true
}

// syncCluster adds the finalizer to a live Cluster that lacks it, and
// removes it from a Cluster being deleted that no policy targets.
func (c *Controller) syncCluster(ctx context.Context, name string) error {
	logger := klog.FromContext(ctx)
	logger.V(4).Info("Processing Cluster", "cluster", name)
	startTime := time.Now()
	defer func() {
		logger.V(4).Info("Finished processing Cluster", "cluster", name, "duration", time.Since(startTime))
	}()

	cluster, err := c.clusters.Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("Cluster not found, ignoring", "cluster", name)
		return nil
	}
	if err != nil {
		return err
	}

	if isDeletionCandidate(cluster) {
		// The Cluster should be deleted. Check whether a policy targets it,
		// and remove the finalizer if none does.
		key := KeyOf(cluster)
		used, err := c.isBeingUsed(ctx, key)
		if err != nil {
			return err
		}
		if !used {
			return c.removeFinalizer(ctx, cluster)
		}
		logger.V(2).Info("Keeping Cluster: a GlobalTrafficPolicy targets it", "cluster", name, "key", key)
		return nil
	}

	if needToAddFinalizer(cluster) {
		// ClusterInUseProtection adds the finalizer to new Clusters; this
		// covers Clusters created before it, or while it was disabled.
		return c.addFinalizer(ctx, cluster)
	}
	return nil
}

// isBeingUsed reports whether a policy targets key.
func (c *Controller) isBeingUsed(ctx context.Context, key string) (bool, error) {
	logger := klog.FromContext(ctx)
	// Look for a policy targeting key in the informer's cache. If one is
	// found, the correct decision to keep the Cluster is taken without an
	// expensive live list; should the cache show a policy as it was before
	// the key left it, the update that removed the key requeues the
	// Cluster.
	if names, err := PoliciesTargeting(c.policyIndex, key); err != nil {
		// No need to return: a live list follows.
		logger.Error(err, "Looking up GlobalTrafficPolicies in the cache", "key", key)
	} else if len(names) > 0 {
		return true, nil
	}

	// A policy write admitted while the Cluster was live, and not stored
	// yet, is in no list. It is asked for before the list: a write that
	// ends before this point is in the list, and one that begins after it
	// is admitted against the deleting Cluster this cache already holds,
	// and refused. The write lands or fails within its request: try again.
	if c.writes != nil && c.writes.Naming(key) {
		return true, fmt.Errorf("a GlobalTrafficPolicy write naming %s is in progress", key)
	}

	// Even if no policy targeting key was found in the cache, such a policy
	// may exist: it might just not be in the cache yet. To be sure that the
	// Cluster may go, look among those a live list returns.
	return c.askAPIServer(ctx, key)
}

func (c *Controller) askAPIServer(ctx context.Context, key string) (bool, error) {
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.client.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return false, fmt.Errorf("listing GlobalTrafficPolicies: %w", err)
		}
		for i := range list.Items {
			if Targets(&list.Items[i], key) {
				klog.FromContext(ctx).V(4).Info("A live list found a GlobalTrafficPolicy targeting the key",
					"key", key, "policy", klog.KObj(&list.Items[i]))
				return true, nil
			}
		}
		if list.Continue == "" {
			return false, nil
		}
		opts.Continue = list.Continue
	}
}

func (c *Controller) addFinalizer(ctx context.Context, cluster *v1alpha1.Cluster) error {
	clone := cluster.DeepCopy()
	clone.Finalizers = append(clone.Finalizers, Finalizer)
	_, err := c.client.FlomeshV1alpha1().Clusters().Update(ctx, clone, metav1.UpdateOptions{FieldManager: FieldManager})
	logger := klog.FromContext(ctx)
	if err != nil {
		logger.Error(err, "Error adding protection finalizer to Cluster", "cluster", cluster.Name)
		return err
	}
	logger.V(3).Info("Added protection finalizer to Cluster", "cluster", cluster.Name)
	return nil
}

func (c *Controller) removeFinalizer(ctx context.Context, cluster *v1alpha1.Cluster) error {
	clone := cluster.DeepCopy()
	clone.Finalizers = removeString(clone.Finalizers, Finalizer)
	// Conditional on the version read: a Cluster changed since is judged
	// again.
	_, err := c.client.FlomeshV1alpha1().Clusters().Update(ctx, clone, metav1.UpdateOptions{FieldManager: FieldManager})
	logger := klog.FromContext(ctx)
	if err != nil {
		logger.Error(err, "Error removing protection finalizer from Cluster", "cluster", cluster.Name)
		return err
	}
	logger.V(3).Info("Removed protection finalizer from Cluster", "cluster", cluster.Name)
	return nil
}

func isDeletionCandidate(c *v1alpha1.Cluster) bool {
	return c.DeletionTimestamp != nil && hasString(c.Finalizers, Finalizer)
}

func needToAddFinalizer(c *v1alpha1.Cluster) bool {
	return c.DeletionTimestamp == nil && !hasString(c.Finalizers, Finalizer)
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func removeString(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// The Cluster handlers feed both queues: the Cluster itself when its
// finalizer may need a change, and every policy when what their status
// says of it may have changed: each policy's status tells the route of
// every member, consumers as well as targets.

func (c *Controller) clusterAdded(obj interface{}) {
	cluster, ok := obj.(*v1alpha1.Cluster)
	if !ok {
		return
	}
	c.enqueueCluster(cluster)
	c.enqueueAllPolicies()
}

func (c *Controller) clusterUpdated(oldObj, newObj interface{}) {
	old, ok := oldObj.(*v1alpha1.Cluster)
	if !ok {
		return
	}
	cluster, ok := newObj.(*v1alpha1.Cluster)
	if !ok {
		return
	}
	c.enqueueCluster(cluster)
	// Heartbeats change a Cluster's status every probe: only a change of
	// its key, of whether it is live or of whether it is Ready concerns
	// the policies.
	// The reason of a Ready condition that stays False is in the status
	// too.
	if KeyOf(old) != KeyOf(cluster) || isLive(old) != isLive(cluster) || isReady(old) != isReady(cluster) ||
		readyReason(old) != readyReason(cluster) {
		c.enqueueAllPolicies()
	}
}

func (c *Controller) clusterDeleted(obj interface{}) {
	if _, ok := obj.(*v1alpha1.Cluster); !ok {
		tombstone, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			utilruntime.HandleError(fmt.Errorf("couldn't get object from tombstone %#v", obj))
			return
		}
		if _, ok = tombstone.Obj.(*v1alpha1.Cluster); !ok {
			utilruntime.HandleError(fmt.Errorf("tombstone contained object that is not a Cluster %#v", obj))
			return
		}
	}
	c.enqueueAllPolicies()
}

func (c *Controller) enqueueCluster(cluster *v1alpha1.Cluster) {
	if needToAddFinalizer(cluster) || isDeletionCandidate(cluster) {
		c.clusterQueue.Add(cluster.Name)
	}
}

// The policy handlers feed both queues too: the policy, and the Clusters
// being deleted whose keys a policy stopped naming, which may now go.

func (c *Controller) policyAdded(obj interface{}) {
	c.enqueuePolicy(obj)
}

func (c *Controller) policyUpdated(oldObj, newObj interface{}) {
	c.enqueuePolicy(newObj)
	old, ok := oldObj.(*v1alpha1.GlobalTrafficPolicy)
	if !ok {
		return
	}
	policy, ok := newObj.(*v1alpha1.GlobalTrafficPolicy)
	if !ok {
		return
	}
	dropped := sets.New(TargetKeys(old)...).Difference(sets.New(TargetKeys(policy)...))
	for key := range dropped {
		c.enqueueDeletingCluster(key)
	}
}

func (c *Controller) policyDeleted(obj interface{}) {
	policy, ok := obj.(*v1alpha1.GlobalTrafficPolicy)
	if !ok {
		tombstone, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			utilruntime.HandleError(fmt.Errorf("couldn't get object from tombstone %#v", obj))
			return
		}
		if policy, ok = tombstone.Obj.(*v1alpha1.GlobalTrafficPolicy); !ok {
			utilruntime.HandleError(fmt.Errorf("tombstone contained object that is not a GlobalTrafficPolicy %#v", obj))
			return
		}
	}
	for _, key := range TargetKeys(policy) {
		c.enqueueDeletingCluster(key)
	}
}

func (c *Controller) enqueuePolicy(obj interface{}) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.policyQueue.Add(key)
}

func (c *Controller) enqueueDeletingCluster(key string) {
	cluster, err := ClusterByKey(c.clusterIndex, key)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("looking up the Cluster of %s: %w", key, err))
		return
	}
	if cluster != nil && isDeletionCandidate(cluster) {
		c.clusterQueue.Add(cluster.Name)
	}
}

// watchImports follows the server's aggregate of ServiceImports, in
// process, and queues the policy of each import that changes: whether a
// target exports the service is read from the import. A watch of the
// aggregate is ended if it falls far behind, and the next one starts from
// the current version: every policy is looked at again when a watch starts,
// since an import may have changed or gone in between, and so the watch
// need not replay every import.
func (c *Controller) watchImports(ctx context.Context) {
	// A list that selects nothing gives the current version, and copies no
	// import.
	list, err := c.importREST.List(ctx, &metainternalversion.ListOptions{LabelSelector: labels.Nothing()})
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Listing ServiceImports")
		return
	}
	rv := list.(*flomesh.ServiceImportList).ResourceVersion
	w, err := c.importREST.Watch(ctx, &metainternalversion.ListOptions{ResourceVersion: rv})
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Watching ServiceImports")
		return
	}
	defer w.Stop()
	c.enqueueAllPolicies()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			si, ok := ev.Object.(*flomesh.ServiceImport)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			// Most imports have no policy.
			if _, err := c.policies.GlobalTrafficPolicies(si.Namespace).Get(si.Name); err == nil {
				c.policyQueue.Add(si.Namespace + "/" + si.Name)
			}
		}
	}
}

func (c *Controller) enqueueAllPolicies() {
	for _, key := range c.policyIndex.ListKeys() {
		c.policyQueue.Add(key)
	}
}
