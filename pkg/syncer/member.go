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

package syncer

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	fedlisters "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// serviceKey is a queued unit of work: everything the syncer writes into
// one member for the service namespace/name.
type serviceKey struct {
	Namespace, Name string
}

// eventScheme resolves the kinds of the objects events are about.
var eventScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}()

// member is the syncer's connection to one member cluster: its clients,
// caches of what the syncer reads and writes there, and its own queue and
// workers, so that a member that does not answer delays only itself.
type member struct {
	name string
	key  string
	// spec is the Cluster spec the connection was built from.
	spec v1alpha1.ClusterSpec
	// target is the key and credentials the connection was made of.
	target members.Target

	kube kubernetes.Interface
	fed  versioned.Interface
	dyn  dynamic.Interface
	// limiter paces every request to the member.
	limiter *adaptiveLimiter
	// err is why the member has no clients (an unusable kubeconfig).
	err error
	// lastUsable, for a member with err, is the connection it replaced
	// that had clients (or that one's lastUsable). It is kept for cleanup
	// alone: "kubectl fedmesh unjoin" deletes a Cluster and then its
	// credentials Secret, and the syncer may see the Secret go first.
	lastUsable *member

	queue workqueue.TypedRateLimitingInterface[serviceKey]
	// cancel stops the member's caches and workers, which run on a
	// context of the syncer's (runMember).
	cancel context.CancelFunc
	// done is closed when the member's workers have all returned.
	done chan struct{}

	fedFactory  fedinformers.SharedInformerFactory
	kubeFactory informers.SharedInformerFactory
	mdFactory   metadatainformer.SharedInformerFactory
	imports     fedlisters.ServiceImportLister
	policies    fedlisters.GlobalTrafficPolicyLister
	exports     fedlisters.ServiceExportLister
	// exportsByPath indexes the member's exports by the paths of their
	// rules (exportPathIndex), to find the exports that claim a path.
	exportsByPath cache.Indexer
	ingresses     networkinglisters.IngressLister
	// ingressesByPath indexes the member's Ingresses by the paths they
	// serve (ingressPathIndex).
	ingressesByPath cache.Indexer
	services        cache.GenericLister
	namespaces      cache.GenericLister
	hasSynced       []cache.InformerSynced
	// synced is set once the CRDs are installed and the caches synced;
	// until then the member's exports are unknown to the other members.
	synced atomic.Bool
	// ready is whether fedmesh-apiserver last reported the member Ready.
	ready atomic.Bool

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	// reported holds, by the UID of the object it is about, the conflict
	// last reported by an event, so that a conflict that lasts is
	// reported once, not at every resync. An object's entry goes with the
	// object.
	reportedMu sync.Mutex
	reported   map[types.UID]string

	// creating holds the namespace creations in flight, so that the
	// workers that need a namespace the cache does not hold yet wait for
	// one request rather than send one each: a member joining a
	// federation had 60 of its workers race to create one namespace, 59
	// of them refused with AlreadyExists.
	creatingMu sync.Mutex
	creating   map[string]*namespaceCreation
}

// namespaceCreation is a namespace creation in flight; err is set before
// done is closed. waiters counts the callers waiting for it.
type namespaceCreation struct {
	done    chan struct{}
	err     error
	waiters int
}

var (
	servicesGVR   = corev1.SchemeGroupVersion.WithResource("services")
	namespacesGVR = corev1.SchemeGroupVersion.WithResource("namespaces")
)

// newMember builds the clients and caches of a member from its Cluster;
// nothing is contacted until run. A kubeconfig that cannot be used gives a
// member with err set, which does nothing until its Cluster changes.
func newMember(c *v1alpha1.Cluster, target members.Target, opts Options) *member {
	m := &member{
		name:   c.Name,
		key:    target.Key,
		target: target,
		spec:   *c.Spec.DeepCopy(),
		done:   make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[serviceKey](50*time.Millisecond, opts.MaxRetryDelay),
			// The member's own metrics, deleted once it is gone.
			workqueue.TypedRateLimitingQueueConfig[serviceKey]{Name: memberQueuePrefix + c.Name, MetricsProvider: memberQueueMetrics{}}),
		reported: map[types.UID]string{},
	}
	m.ready.Store(meta.IsStatusConditionTrue(c.Status.Conditions, "Ready"))
	// Every call is bounded, so that a member that stopped answering
	// costs its own worker a timeout and nothing more.
	cfg, err := target.RESTConfig("fedmesh-syncer", opts.MemberTimeout)
	if err != nil {
		m.err = err
		return m
	}
	// One limiter for every client of the member, informers included,
	// that backs off when the member's API Priority and Fairness refuses
	// (adaptiveLimiter); members do not share it, so a member that
	// refuses slows nobody else.
	qps, burst := opts.MemberQPS, opts.MemberBurst
	if qps <= 0 || burst <= 0 {
		qps, burst = DefaultMemberQPS, DefaultMemberBurst
	}
	m.limiter = newAdaptiveLimiter(qps, burst)
	m.limiter.throttled = func() { throttledTotal.WithLabelValues(c.Name).Inc() }
	limitConfig(cfg, m.limiter)
	if m.kube, err = kubernetes.NewForConfig(cfg); err == nil {
		if m.fed, err = versioned.NewForConfig(cfg); err == nil {
			m.dyn, err = dynamic.NewForConfig(cfg)
		}
	}
	var md metadata.Interface
	if err == nil {
		md, err = metadata.NewForConfig(rest.CopyConfig(cfg))
	}
	if err != nil {
		m.err = err
		return m
	}

	m.fedFactory = fedinformers.NewSharedInformerFactoryWithOptions(m.fed, opts.ResyncPeriod, fedinformers.WithTransform(dropManagedFields))
	m.kubeFactory = informers.NewSharedInformerFactoryWithOptions(m.kube, opts.ResyncPeriod, informers.WithTransform(dropManagedFields))
	// Services and namespaces matter only by their existence: their
	// metadata is all that is cached.
	m.mdFactory = metadatainformer.NewFilteredSharedInformerFactory(md, opts.ResyncPeriod, metav1.NamespaceAll, nil)

	fl := m.fedFactory.Flomesh().V1alpha1()
	m.imports = fl.ServiceImports().Lister()
	m.policies = fl.GlobalTrafficPolicies().Lister()
	m.exports = fl.ServiceExports().Lister()
	_ = fl.ServiceExports().Informer().AddIndexers(cache.Indexers{exportPathIndex: indexExportPaths})
	m.exportsByPath = fl.ServiceExports().Informer().GetIndexer()
	m.ingresses = m.kubeFactory.Networking().V1().Ingresses().Lister()
	_ = m.kubeFactory.Networking().V1().Ingresses().Informer().AddIndexers(cache.Indexers{ingressPathIndex: indexIngressPaths})
	m.ingressesByPath = m.kubeFactory.Networking().V1().Ingresses().Informer().GetIndexer()
	svc := m.mdFactory.ForResource(servicesGVR)
	ns := m.mdFactory.ForResource(namespacesGVR)
	_ = svc.Informer().SetTransform(dropManagedFields)
	_ = ns.Informer().SetTransform(dropManagedFields)
	m.services, m.namespaces = svc.Lister(), ns.Lister()
	m.hasSynced = []cache.InformerSynced{
		fl.ServiceImports().Informer().HasSynced,
		fl.GlobalTrafficPolicies().Informer().HasSynced,
		fl.ServiceExports().Informer().HasSynced,
		m.kubeFactory.Networking().V1().Ingresses().Informer().HasSynced,
		svc.Informer().HasSynced,
		ns.Informer().HasSynced,
	}

	m.broadcaster = record.NewBroadcaster()
	m.recorder = m.broadcaster.NewRecorder(eventScheme, corev1.EventSource{Component: FieldManager})
	return m
}

// addHandlers routes the member's changes to its own queue: a change of an
// object the syncer writes is checked against what it wants; a change of
// an export, to its Ingress and conditions (what it means to the other
// members reaches them through the control plane's import); a change of an
// Ingress of someone else may free or take a path of any export of the
// member; one of the syncer's own Ingresses
// coming, going or moving may free or take a path of the member's other
// exports that claim the same paths.
func (m *member) addHandlers(s *Syncer) {
	fl := m.fedFactory.Flomesh().V1alpha1()
	local := handler(func(obj metav1.Object) { m.queue.Add(serviceKey{obj.GetNamespace(), obj.GetName()}) })
	_, _ = fl.ServiceImports().Informer().AddEventHandler(local)
	_, _ = fl.GlobalTrafficPolicies().Informer().AddEventHandler(local)
	_, _ = m.mdFactory.ForResource(servicesGVR).Informer().AddEventHandler(local)
	_, _ = fl.ServiceExports().Informer().AddEventHandler(local)
	m.forgetReportedOnDelete()
	ingressChanged := func(obj interface{}) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok {
			return
		}
		if !Owned(ing) {
			m.enqueueExports()
			return
		}
		if export := ing.Labels[ExportLabel]; export != "" {
			m.queue.Add(serviceKey{ing.Namespace, export})
		}
		m.enqueuePathClaimants(ing)
	}
	_, _ = m.kubeFactory.Networking().V1().Ingresses().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: ingressChanged,
		UpdateFunc: func(old, obj interface{}) {
			ingressChanged(old)
			ingressChanged(obj)
		},
		DeleteFunc: ingressChanged,
	})
	// A namespace deleted in the member took the syncer's objects with it;
	// the writes that waited for it to go (ensureNamespace) can be made,
	// in a namespace made again, if the federation still wants them there.
	_, _ = m.mdFactory.ForResource(namespacesGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj interface{}) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if a, err := meta.Accessor(obj); err == nil {
				s.enqueueNamespace(m, a.GetName())
			}
		},
	})
}

// handler calls f with the object of every event, including deletions
// whose final state was missed.
func handler(f func(metav1.Object)) cache.ResourceEventHandler {
	call := func(obj interface{}) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if a, err := meta.Accessor(obj); err == nil {
			f(a)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    call,
		UpdateFunc: func(_, obj interface{}) { call(obj) },
		DeleteFunc: call,
	}
}

// dropManagedFields keeps managed fields, which the syncer never reads,
// out of the caches.
func dropManagedFields(obj interface{}) (interface{}, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

func (m *member) startInformers(ctx context.Context) {
	m.fedFactory.Start(ctx.Done())
	m.kubeFactory.Start(ctx.Done())
	m.mdFactory.Start(ctx.Done())
	m.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.kube.CoreV1().Events("")})
}

// stop stops the member's workers and caches and waits for the workers.
func (m *member) stop() {
	if m.cancel != nil {
		m.cancel()
	}
	<-m.done
	if m.broadcaster != nil {
		m.broadcaster.Shutdown()
	}
}

// enqueueExports queues every export of the member.
func (m *member) enqueueExports() {
	list, err := m.exports.List(labelsEverything)
	if err != nil {
		return
	}
	for _, e := range list {
		m.queue.Add(serviceKey{e.Namespace, e.Name})
	}
}

// usable returns the member if it has clients, else the last connection
// it replaced that had, or nil.
func (m *member) usable() *member {
	if m == nil || m.err == nil {
		return m
	}
	return m.lastUsable
}

// exportPathIndex indexes exports by the paths of their rules.
const exportPathIndex = "path"

func indexExportPaths(obj interface{}) ([]string, error) {
	e, ok := obj.(*v1alpha1.ServiceExport)
	if !ok {
		return nil, nil
	}
	return exportPaths(e), nil
}

// exportsClaiming returns the member's exports with a rule of path.
func (m *member) exportsClaiming(path string) []*v1alpha1.ServiceExport {
	objs, err := m.exportsByPath.ByIndex(exportPathIndex, path)
	if err != nil {
		return nil
	}
	out := make([]*v1alpha1.ServiceExport, 0, len(objs))
	for _, o := range objs {
		if e, ok := o.(*v1alpha1.ServiceExport); ok {
			out = append(out, e)
		}
	}
	return out
}

// enqueuePathClaimants queues the member's exports that claim a path the
// syncer's Ingress ing serves.
func (m *member) enqueuePathClaimants(ing *networkingv1.Ingress) {
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			for _, e := range m.exportsClaiming(p.Path) {
				m.queue.Add(serviceKey{e.Namespace, e.Name})
			}
		}
	}
}

// reportConflict records a Warning event in the member about obj, unless
// it is the conflict last reported about obj: a conflict that lasts is
// reported when it starts, not again at every resync.
func (m *member) reportConflict(obj runtime.Object, uid types.UID, reason, message string) {
	k := reason + "/" + message
	m.reportedMu.Lock()
	seen := m.reported[uid] == k
	// An object deleted meanwhile is not remembered: its deletion, which
	// forgets it, has been handled or is about to be. Looked at under the
	// lock, as the cache drops an object before its deletion is handled.
	if m.cached(obj, uid) {
		m.reported[uid] = k
	}
	m.reportedMu.Unlock()
	if seen {
		return
	}
	m.recorder.Event(obj, corev1.EventTypeWarning, reason, message)
}

// cached reports whether the member's caches hold obj, of that uid.
func (m *member) cached(obj runtime.Object, uid types.UID) bool {
	a, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	var current metav1.Object
	switch obj.(type) {
	case *v1alpha1.ServiceExport:
		current, err = m.exports.ServiceExports(a.GetNamespace()).Get(a.GetName())
	case *v1alpha1.ServiceImport:
		current, err = m.imports.ServiceImports(a.GetNamespace()).Get(a.GetName())
	case *v1alpha1.GlobalTrafficPolicy:
		current, err = m.policies.GlobalTrafficPolicies(a.GetNamespace()).Get(a.GetName())
	default:
		// No deletion would forget it.
		return false
	}
	return err == nil && current.GetUID() == uid
}

// forgetReportedOnDelete makes the deletion of an object conflicts are
// reported about (reconcile) forget what was reported of it.
func (m *member) forgetReportedOnDelete() {
	fl := m.fedFactory.Flomesh().V1alpha1()
	forget := cache.ResourceEventHandlerFuncs{DeleteFunc: m.forgetReported}
	_, _ = fl.ServiceExports().Informer().AddEventHandler(forget)
	_, _ = fl.ServiceImports().Informer().AddEventHandler(forget)
	_, _ = fl.GlobalTrafficPolicies().Informer().AddEventHandler(forget)
}

// forgetReported forgets the conflict reported about obj, deleted.
func (m *member) forgetReported(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	a, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	m.reportedMu.Lock()
	delete(m.reported, a.GetUID())
	m.reportedMu.Unlock()
}

// ingressPathIndex indexes Ingresses by the paths they serve for every
// host (servesPath), the only ones that can take an export's path.
const ingressPathIndex = "path"

func indexIngressPaths(obj interface{}) ([]string, error) {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return nil, nil
	}
	var paths []string
	for _, r := range ing.Spec.Rules {
		if r.Host != "" || r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if !slices.Contains(paths, p.Path) {
				paths = append(paths, p.Path)
			}
		}
	}
	return paths, nil
}

// ingressesInWay returns the member's Ingresses that PathsConflict must
// look at for export: the one of the export's Ingress name and those
// serving one of its paths. The rest cannot conflict with it; not listing
// them keeps a reconcile's cost from growing with the member's Ingresses.
func (m *member) ingressesInWay(export *v1alpha1.ServiceExport) []*networkingv1.Ingress {
	if export == nil {
		return nil
	}
	var out []*networkingv1.Ingress
	if ing, err := m.ingresses.Ingresses(export.Namespace).Get(IngressName(export.Name)); err == nil {
		out = append(out, ing)
	}
	for _, p := range exportPaths(export) {
		objs, err := m.ingressesByPath.ByIndex(ingressPathIndex, p)
		if err != nil {
			continue
		}
		for _, o := range objs {
			if ing, ok := o.(*networkingv1.Ingress); ok && !slices.Contains(out, ing) {
				out = append(out, ing)
			}
		}
	}
	return out
}
