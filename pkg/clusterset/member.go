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
package clusterset

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// Reasons of a Cluster's Ready condition.
const (
	ReasonConnected         = "Connected"
	ReasonSyncing           = "Syncing"
	ReasonUnreachable       = "Unreachable"
	ReasonUnauthorized      = "Unauthorized"
	ReasonForbidden         = "Forbidden"
	ReasonInvalidKubeconfig = "InvalidKubeconfig"
	// ReasonInvalidCredentials: the credentials Secret a Cluster names is
	// missing or refused.
	ReasonInvalidCredentials = "InvalidCredentials"
	ReasonCRDMissing         = "CRDMissing"
	ConditionReady           = "Ready"
	probeTimeout             = 3 * time.Second
	serviceExportsResource   = "serviceexports"
)

// member is the connection to one member cluster: its clients, the caches
// of its ServiceExports and Services, and what fedmesh knows of its health.
type member struct {
	name string
	// spec is the Cluster spec the connection was built from; a change of
	// kubeconfig or gateway builds a new member.
	spec v1alpha1.ClusterSpec
	// target is the key and credentials the connection was made of.
	target members.Target
	info   imports.Cluster

	kube    kubernetes.Interface
	fedmesh versioned.Interface
	clock   clock.PassiveClock

	// stopped is closed by stop: the member's caches end, and so does a
	// probe of it in flight.
	stopped  chan struct{}
	stopOnce sync.Once

	// caches are nil until the member's checks first pass and
	// startInformers starts them.
	caches atomic.Pointer[memberCaches]

	// mu guards what a probe finds; the import computation reads
	// notReadySince from other goroutines.
	mu        sync.Mutex
	ready     metav1.Condition
	version   string
	heartbeat time.Time
	// notReadySince is when the member last stopped being Ready; zero
	// while Ready.
	notReadySince time.Time

	// The rest belongs to the probe worker that holds the member's Cluster
	// name. The probe queue hands a name to one worker at a time, so these
	// need no lock, and a member is never probed twice at once.

	informersUp bool
	// accessCheckedAt is when the member's permissions last passed.
	accessCheckedAt time.Time
	// notReadyInImports is the notReadySince the member's imports were
	// last queued for.
	notReadyInImports time.Time
	// statusWritten is when the member's status was last written.
	statusWritten time.Time
}

// memberCaches are the caches of a member's ServiceExports and Services.
type memberCaches struct {
	exports  *store[*v1alpha1.ServiceExport, imports.ServiceExport]
	services *store[*corev1.Service, imports.Service]
	synced   []cache.InformerSynced
}

// newMemberCaches returns empty caches that call onChange for every
// export that changed, and for every Service that changed and is exported.
func newMemberCaches(onChange func(namespace, name string)) *memberCaches {
	exports := newStore(imports.ExportOf, (*imports.ServiceExport).Equal, onChange)
	// A Service matters only when an export names it.
	services := newStore(imports.ServiceOf, (*imports.Service).Equal, func(namespace, name string) {
		if exports.Has(namespace, name) {
			onChange(namespace, name)
		}
	})
	return &memberCaches{
		exports:  exports,
		services: services,
		synced:   []cache.InformerSynced{exports.HasSynced, services.HasSynced},
	}
}

// newMember builds the clients of a member from its Cluster. A kubeconfig
// that cannot be used gives a member that is never Ready, with the reason.
func (c *Controller) newMember(ctx context.Context, cluster *v1alpha1.Cluster, target members.Target) *member {
	m := &member{name: cluster.Name, spec: *cluster.Spec.DeepCopy(), target: target, info: clusterInfo(ctx, cluster),
		clock: c.clock, stopped: make(chan struct{})}
	m.notReadySince = c.clock.Now()
	// Its first Ready probe queues its exports, as a change of readiness.
	m.notReadyInImports = m.notReadySince
	// One slow member must never hold the others: every call is bounded.
	cfg, err := target.RESTConfig("fedmesh-apiserver", 30*time.Second)
	if err != nil {
		// The message is fedmesh's own: the keys at fault.
		reason := ReasonInvalidKubeconfig
		if cluster.Spec.CredentialsSecretRef != nil {
			reason = ReasonInvalidCredentials
		}
		m.ready = condition(metav1.ConditionFalse, reason, truncateMessage(err.Error()))
		return m
	}
	cfg.QPS, cfg.Burst = 50, 100
	if m.kube, m.fedmesh, err = c.newClients(cfg); err != nil {
		m.ready = condition(metav1.ConditionFalse, ReasonInvalidKubeconfig, err.Error())
		return m
	}
	m.ready = condition(metav1.ConditionUnknown, ReasonSyncing, "connecting")
	return m
}

// newClients builds the clients of a member.
func newClients(cfg *rest.Config) (kubernetes.Interface, versioned.Interface, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	fedmesh, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return kube, fedmesh, nil
}

// stop ends the member's caches, and any probe of it in flight. It may be
// called more than once.
func (m *member) stop() {
	m.stopOnce.Do(func() { close(m.stopped) })
}

// bound returns a context of ctx that is done, as well, once the member is
// stopped.
func (m *member) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	release := context.AfterFunc(wait.ContextForChannel(m.stopped), cancel)
	return ctx, func() {
		release()
		cancel()
	}
}

// clusterInfo is what the import computation needs of a Cluster.
func clusterInfo(ctx context.Context, c *v1alpha1.Cluster) imports.Cluster {
	info := imports.Cluster{
		Name:        c.Name,
		Key:         members.Key(c.Name, &c.Spec),
		GatewayHost: c.Spec.GatewayHost,
		GatewayPort: c.Spec.GatewayPort,
	}
	if ip := net.ParseIP(c.Spec.GatewayHost); ip != nil {
		info.GatewayIP = ip.String()
	} else {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if addrs, err := net.DefaultResolver.LookupHost(ctx, c.Spec.GatewayHost); err == nil && len(addrs) > 0 {
			info.GatewayIP = addrs[0]
		}
	}
	// Computed once, shared by every import the member serves.
	info.Addresses = imports.GatewayAddresses(info)
	return info
}

func condition(status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: ConditionReady, Status: status, Reason: reason, Message: message}
}

// probe checks the member once: it answers, the credentials work, and the
// ServiceExport CRD is installed. On the first success it starts the
// caches, which live as long as the member or ctx, and reports Syncing
// until they have synced. It returns whether the member is Ready.
func (m *member) probe(ctx context.Context, onChange func(namespace, name string)) bool {
	if m.kube == nil {
		return false
	}
	logger := klog.FromContext(ctx)
	// Every step ends when the member is stopped.
	memberCtx, cancel := m.bound(ctx)
	defer cancel()
	checkCtx, cancelCheck := context.WithTimeout(memberCtx, probeTimeout)
	defer cancelCheck()
	cond := m.check(checkCtx)
	if cond.Status == metav1.ConditionTrue {
		if !m.informersUp {
			m.informersUp = true
			logger.V(2).Info("Member checks passed; starting caches")
			m.startInformers(ctx, onChange)
			// A new member is usually small: give its caches a moment to
			// sync, so it turns Ready on this probe rather than the next.
			syncCtx, cancelSync := context.WithTimeout(memberCtx, probeTimeout)
			m.waitForSync(syncCtx)
			cancelSync()
			logger.V(2).Info("Member caches started", "synced", m.synced())
		}
		if !m.synced() {
			cond = condition(metav1.ConditionFalse, ReasonSyncing, "caches of ServiceExports and Services are syncing")
		}
	}
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cond.Status == metav1.ConditionTrue {
		m.heartbeat = now
		m.notReadySince = time.Time{}
	} else if m.notReadySince.IsZero() {
		m.notReadySince = now
	}
	m.ready = cond
	return cond.Status == metav1.ConditionTrue
}

func (m *member) check(ctx context.Context) metav1.Condition {
	// Every call carries ctx, so a member that does not answer costs one
	// probe timeout and no more.
	discovery := m.kube.Discovery()
	info, err := discovery.ServerVersionWithContext(ctx)
	if err != nil {
		return failure(err)
	}
	version := reportedVersion(info.GitVersion)
	m.mu.Lock()
	m.version = version
	m.mu.Unlock()
	list, err := discovery.ServerResourcesForGroupVersionWithContext(ctx, v1alpha1.SchemeGroupVersion.String())
	if err != nil && !apierrors.IsNotFound(err) {
		return failure(err)
	}
	found := false
	if err == nil {
		for _, r := range list.APIResources {
			found = found || r.Name == serviceExportsResource
		}
	}
	if !found {
		return condition(metav1.ConditionFalse, ReasonCRDMissing, "the member has no serviceexports.flomesh.io CRD")
	}
	if denied, err := m.checkAccess(ctx); err != nil {
		return failure(err)
	} else if denied != "" {
		return condition(metav1.ConditionFalse, ReasonForbidden,
			"the member's identity for fedmesh may not "+denied+" (see kubectl fedmesh join)")
	}
	return condition(metav1.ConditionTrue, ReasonConnected, "connected, caches synced")
}

// failure is the Ready condition of a member a request failed on. Its
// message is fedmesh's own fixed text: a member's answer (the body of a
// 403 or a 500, an error page of whatever the URL reaches) is never
// repeated, or whoever may read Clusters could read internal URLs and scan
// ports through fedmesh.
func failure(err error) metav1.Condition {
	switch {
	case apierrors.IsUnauthorized(err):
		return condition(metav1.ConditionFalse, ReasonUnauthorized, "the member refused the kubeconfig's credentials")
	case apierrors.IsForbidden(err):
		return condition(metav1.ConditionFalse, ReasonForbidden, "the member refused a request of fedmesh's identity (HTTP 403)")
	}
	return condition(metav1.ConditionFalse, ReasonUnreachable, unreachable(err))
}

// unreachable says, in fixed words, why a member did not answer.
func unreachable(err error) string {
	var (
		netErr     net.Error
		opErr      *net.OpError
		dnsErr     *net.DNSError
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		statusErr  apierrors.APIStatus
		recordErr  tls.RecordHeaderError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, members.ErrResponseTooLarge):
		return "the member's answer exceeds fedmesh's size limit (--member-max-response-bytes)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "no answer within " + probeTimeout.String()
	case errors.As(err, &dnsErr):
		return "the server's host name does not resolve"
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr), errors.As(err, &invalidErr):
		return "the server's certificate does not verify against the kubeconfig's certificate authority"
	case errors.As(err, &recordErr):
		return "the server does not speak TLS"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &opErr):
		return "the server cannot be reached"
	case errors.As(err, &statusErr) && statusErr.Status().Code != 0:
		return fmt.Sprintf("the member answered HTTP %d", statusErr.Status().Code)
	}
	return "the member gave no usable answer"
}

// gitVersion matches the versions Kubernetes reports: v1.37.2,
// v1.38.0-alpha.1, v1.31.4+k3s1, v1.30.2-eks-1234abc.
var gitVersion = regexp.MustCompile(`^v[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}([-+][0-9A-Za-z.+-]{1,64})?$`)

// reportedVersion is the Kubernetes version a member reported, as status
// may show it: a well-formed version, or nothing.
func reportedVersion(v string) string {
	if gitVersion.MatchString(v) {
		return v
	}
	return ""
}

// maxMessageLength bounds a condition message fedmesh writes.
const maxMessageLength = 1024

// truncateMessage bounds a condition message.
func truncateMessage(msg string) string {
	if len(msg) <= maxMessageLength {
		return msg
	}
	cut := maxMessageLength
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "..."
}

// accessRecheck is how often a member's permissions are verified again
// once they passed: an informer whose permission is revoked keeps its
// open watch, so only this check notices.
const accessRecheck = 10 * time.Second

// checkAccess asks the member, by one SelfSubjectRulesReview, what the
// identity fedmesh uses may do, and returns the first permission of
// memberrbac.Rules (what fedmesh-apiserver and fedmesh-syncer do there)
// it lacks, or "". Where the member's authorizer cannot list rules, it
// asks about each of fedmesh-apiserver's own permissions instead.
func (m *member) checkAccess(ctx context.Context) (string, error) {
	if !m.accessCheckedAt.IsZero() && m.clock.Since(m.accessCheckedAt) < accessRecheck {
		return "", nil
	}
	review, err := m.kube.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: metav1.NamespaceDefault},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	if !review.Status.Incomplete {
		if c, missing := memberrbac.Missing(review.Status.ResourceRules, memberrbac.Checks(memberrbac.Rules())); missing {
			return c.String(), nil
		}
	} else {
		for _, c := range memberrbac.Checks(memberrbac.APIServerRules) {
			denied, err := m.denied(ctx, c)
			if err != nil || denied {
				return c.String(), err
			}
		}
	}
	m.accessCheckedAt = m.clock.Now()
	return "", nil
}

// denied asks the member whether the identity may not do c.
func (m *member) denied(ctx context.Context, c memberrbac.Check) (bool, error) {
	review, err := m.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: c.Group, Resource: c.Resource, Verb: c.Verb,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return !review.Status.Allowed, nil
}

// waitForSync waits until ctx is done for the member's caches, polling
// more often than cache.WaitForCacheSync's 100 ms: this wait is on the
// path of a registration to Ready.
func (m *member) waitForSync(ctx context.Context) {
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for !m.synced() {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// listWatchOnly marks a ListerWatcher as not to be used for a watch-list:
// a member's kube-apiserver answers a watch-list only once its watch cache
// has caught up with etcd, which a plain LIST does not wait for. Measured
// here, a new member's caches sync in about 1 s by watch-list and 0.1 s by
// LIST and WATCH, and that sync is most of a registration's time to Ready.
type listWatchOnly struct{}

func (listWatchOnly) IsWatchListSemanticsUnSupported() bool { return true }

func (m *member) startInformers(ctx context.Context, onChange func(namespace, name string)) {
	exportsLW := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return m.fedmesh.FlomeshV1alpha1().ServiceExports(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return m.fedmesh.FlomeshV1alpha1().ServiceExports(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, listWatchOnly{})
	servicesLW := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return m.kube.CoreV1().Services(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return m.kube.CoreV1().Services(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, listWatchOnly{})

	c := newMemberCaches(onChange)
	// The caches are published before they fill: an empty cache serves
	// no export, as before the first list.
	m.caches.Store(c)

	// Each Reflector writes straight into its store: no DeltaFIFO, no
	// indexer, no event handlers.
	exportsReflector := cache.NewReflectorWithOptions(exportsLW, &v1alpha1.ServiceExport{}, c.exports,
		cache.ReflectorOptions{Name: "member/" + m.name + "/serviceexports", Backoff: memberWatchBackoff()})
	servicesReflector := cache.NewReflectorWithOptions(servicesLW, &corev1.Service{}, c.services,
		cache.ReflectorOptions{Name: "member/" + m.name + "/services", Backoff: memberWatchBackoff()})
	ctx, cancel := m.bound(ctx)
	go func() {
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() { exportsReflector.RunWithContext(ctx) })
		wg.Go(func() { servicesReflector.RunWithContext(ctx) })
		wg.Wait()
	}()
}

// memberWatchBackoffCap bounds the wait of a member's cache between two
// attempts to list or watch again after one failed.
const memberWatchBackoffCap = 2 * time.Second

// memberWatchBackoff is the back-off of a member cache's reflector. The
// client-go default doubles from 0.8 s up to 30 s, with as much jitter:
// after a member's kube-apiserver was down or hung for ten seconds, its
// caches came back up to 25 s after the member did (measured by the fault
// suite, test/chaos), while the probe already reported it Ready, so its
// exports created meanwhile were missing from the imports, and its deleted
// ones kept, that long. Capped at the probe interval's default, the caches
// resume within about 3 s of the member, at a cost of one LIST or WATCH
// attempt per cache every 2 s while a member is down.
func memberWatchBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 4, Cap: memberWatchBackoffCap}
}

// synced returns whether the member's caches have been started and have
// synced.
func (m *member) synced() bool {
	c := m.caches.Load()
	if c == nil {
		return false
	}
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// export returns the member's export of namespace/name and its Service,
// when the caches have them: the cached values themselves, which are
// never changed once stored.
func (m *member) export(namespace, name string) (imports.Export, bool) {
	c := m.caches.Load()
	if c == nil {
		return imports.Export{}, false
	}
	e, ok := c.exports.Get(namespace, name)
	if !ok {
		return imports.Export{}, false
	}
	svc, _ := c.services.Get(namespace, name)
	return imports.Export{Cluster: m.info, Export: e, Service: svc, NotReadySince: m.notReady()}, true
}

// exportKeys lists namespace/name of every export the member has.
func (m *member) exportKeys() [][2]string {
	c := m.caches.Load()
	if c == nil {
		return nil
	}
	return c.exports.Keys()
}

// exportCount returns how many exports the member has.
func (m *member) exportCount() int {
	c := m.caches.Load()
	if c == nil {
		return 0
	}
	return c.exports.Len()
}

// notReady returns when the member last stopped being Ready; zero while
// it is Ready.
func (m *member) notReady() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notReadySince
}
