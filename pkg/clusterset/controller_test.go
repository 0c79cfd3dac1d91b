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
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"github.com/fedmesh/fedmesh/pkg/members"
)

var (
	clustersResource = v1alpha1.SchemeGroupVersion.WithResource("clusters")
	// start is the fake clock's time when a fixture is made.
	start = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
)

// fixture builds a controller over fake clients, as sample-controller's
// controller_test.go does: the Clusters are in the control plane's fake
// client and in the controller's lister, each member is a pair of fake
// clientsets, and a test runs the controller's handlers for a Cluster and
// compares the actions the control plane recorded with those it expects.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	client *fake.Clientset
	// indexer is the controller's cache of Clusters.
	indexer cache.Indexer
	// policies is the controller's cache of GlobalTrafficPolicies.
	policies   cache.Indexer
	clock      *testingclock.FakeClock
	sink       *recordingSink
	controller *Controller
	// members are the fake members, by Cluster name.
	members map[string]*fakeMember
	// actions are the writes expected on the control plane.
	actions []clienttesting.Action
}

func newFixture(t *testing.T, clusters ...*v1alpha1.Cluster) *fixture {
	f := &fixture{t: t, ctx: t.Context(), clock: testingclock.NewFakeClock(start), sink: newRecordingSink(), members: map[string]*fakeMember{}}
	objects := make([]runtime.Object, len(clusters))
	for i, c := range clusters {
		objects[i] = c
		f.members[c.Name] = newFakeMember()
	}
	f.client = fake.NewSimpleClientset(objects...)
	factory := fedinformers.NewSharedInformerFactory(f.client, 0)
	opts := DefaultOptions()
	f.controller = New(f.client, factory, nil, f.sink, opts)
	f.controller.clock = f.clock
	f.controller.newClients = f.newClients
	// The delays of the probe queue follow the fake clock.
	f.controller.probeQueue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](probeRetryBase, opts.ProbeInterval),
		workqueue.TypedRateLimitingQueueConfig[string]{Clock: f.clock})
	t.Cleanup(f.controller.clusterQueue.ShutDown)
	t.Cleanup(f.controller.serviceQueue.ShutDown)
	t.Cleanup(f.controller.probeQueue.ShutDown)
	f.indexer = factory.Flomesh().V1alpha1().Clusters().Informer().GetIndexer()
	f.policies = factory.Flomesh().V1alpha1().GlobalTrafficPolicies().Informer().GetIndexer()
	for _, c := range clusters {
		require.NoError(t, f.indexer.Add(c))
	}
	// The informer is not run: the cache follows the status writes at
	// once, as the informer would a moment later, so that the next probe
	// compares with what was written.
	f.client.PrependReactor("update", "clusters", func(action clienttesting.Action) (bool, runtime.Object, error) {
		obj := action.(clienttesting.UpdateAction).GetObject()
		if _, cached, _ := f.indexer.Get(obj); cached {
			assert.NoError(t, f.indexer.Update(obj.DeepCopyObject()))
		}
		return false, nil, nil
	})
	return f
}

// newClients returns the fake clients of the member whose server cfg names.
func (f *fixture) newClients(cfg *rest.Config) (kubernetes.Interface, versioned.Interface, error) {
	for name, m := range f.members {
		if cfg.Host == serverOf(name) {
			return m.kube, m.fedmesh, nil
		}
	}
	return nil, nil, fmt.Errorf("no member at %s", cfg.Host)
}

// sync runs the Cluster handler for name.
func (f *fixture) sync(name string) {
	f.t.Helper()
	require.NoError(f.t, f.controller.syncCluster(f.ctx, name))
}

// probe runs the probe handler for name.
func (f *fixture) probe(name string) (probeOutcome, error) {
	return f.controller.syncProbe(f.ctx, name)
}

// expectStatus expects the status of cluster to be written as want.
func (f *fixture) expectStatus(want *v1alpha1.Cluster) {
	f.actions = append(f.actions, clienttesting.NewRootUpdateSubresourceAction(clustersResource, "status", want))
}

// verify compares the writes the control plane recorded with those
// expected, then forgets both.
func (f *fixture) verify() {
	f.t.Helper()
	var got []clienttesting.Action
	for _, a := range f.client.Actions() {
		// Reads are the informer's, which the fixture does not run.
		if a.GetVerb() != "list" && a.GetVerb() != "watch" && a.GetVerb() != "get" {
			got = append(got, a)
		}
	}
	require.Len(f.t, got, len(f.actions), "actions: %v", got)
	for i, want := range f.actions {
		checkAction(f.t, want, got[i])
	}
	f.client.ClearActions()
	f.actions = nil
}

// checkAction checks that actual is the action expected: the same verb,
// resource, subresource and object.
func checkAction(t *testing.T, expected, actual clienttesting.Action) {
	t.Helper()
	require.True(t, expected.Matches(actual.GetVerb(), actual.GetResource().Resource), "expected %#v, got %#v", expected, actual)
	require.Equal(t, expected.GetSubresource(), actual.GetSubresource())
	if e, ok := expected.(clienttesting.UpdateAction); ok {
		assert.Equal(t, e.GetObject(), actual.(clienttesting.UpdateAction).GetObject())
	}
}

// fakeMember is a member cluster: fake clientsets whose discovery serves
// the ServiceExport CRD and a version, and whose authorizer grants fedmesh
// everything.
type fakeMember struct {
	kube    *k8sfake.Clientset
	fedmesh *fake.Clientset
	// fail, when set, is the error of every request to the member.
	fail atomic.Pointer[error]
	// denied, when set, makes the member's authorizer grant fedmesh
	// nothing.
	denied atomic.Bool
}

func newFakeMember() *fakeMember {
	m := &fakeMember{kube: k8sfake.NewClientset(), fedmesh: fake.NewSimpleClientset()}
	m.kube.Resources = []*metav1.APIResourceList{{
		GroupVersion: v1alpha1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: serviceExportsResource, Namespaced: true, Kind: "ServiceExport"}},
	}}
	m.kube.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.37.2"}
	m.kube.PrependReactor("create", "selfsubjectrulesreviews", func(action clienttesting.Action) (bool, runtime.Object, error) {
		review := action.(clienttesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectRulesReview).DeepCopy()
		if !m.denied.Load() {
			review.Status.ResourceRules = []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}
		}
		return true, review, nil
	})
	m.kube.PrependReactor("*", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		if err := m.fail.Load(); err != nil {
			return true, nil, *err
		}
		return false, nil, nil
	})
	return m
}

// setFailure makes every request to the member fail with err, or, when
// err is nil, succeed again.
func (m *fakeMember) setFailure(err error) {
	if err == nil {
		m.fail.Store(nil)
		return
	}
	m.fail.Store(&err)
}

// memberActions returns "verb resource" of the requests the member's
// kube-apiserver saw, but the caches' lists and watches, and forgets them.
func (m *fakeMember) memberActions() []string {
	var got []string
	for _, a := range m.kube.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			got = append(got, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	m.kube.ClearActions()
	return got
}

// addExport makes the member export namespace/name, port 8080 of its
// Service at a path.
func (m *fakeMember) addExport(t *testing.T, namespace, name string) {
	t.Helper()
	_, err := m.fedmesh.FlomeshV1alpha1().ServiceExports(namespace).Create(t.Context(), &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(start)},
		Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/" + name, PathType: v1alpha1.PathTypePrefix}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = m.kube.CoreV1().Services(namespace).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

func serverOf(name string) string { return "https://" + name + ".member.test" }

// newCluster returns a Cluster reached at serverOf(name).
func newCluster(name string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec: v1alpha1.ClusterSpec{
			GatewayHost: "192.0.2.1", GatewayPort: 80,
			Kubeconfig: fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: member
contexts:
- name: member
  context: {cluster: member, user: fedmesh}
clusters:
- name: member
  cluster: {server: %q}
users:
- name: fedmesh
  user: {token: secret}
`, serverOf(name)),
		},
	}
}

// withStatus returns cluster with the status a probe writes at now: its
// Ready condition, the version and export count, and the last heartbeat.
func withStatus(cluster *v1alpha1.Cluster, ready metav1.Condition, transition time.Time, version string, exports int32, heartbeat *time.Time) *v1alpha1.Cluster {
	c := cluster.DeepCopy()
	ready.ObservedGeneration = c.Generation
	ready.LastTransitionTime = metav1.NewTime(transition)
	c.Status.Conditions = []metav1.Condition{ready}
	c.Status.KubernetesVersion = version
	c.Status.ExportCount = exports
	if heartbeat != nil {
		c.Status.LastHeartbeatTime = &metav1.Time{Time: *heartbeat}
	}
	return c
}

var connected = condition(metav1.ConditionTrue, ReasonConnected, "connected, caches synced")

// recordingSink holds the imports the controller computed.
type recordingSink struct {
	mu      sync.Mutex
	imports map[string]*flomesh.ServiceImport
}

func newRecordingSink() *recordingSink {
	return &recordingSink{imports: map[string]*flomesh.ServiceImport{}}
}

func (s *recordingSink) Set(obj *flomesh.ServiceImport, _ func(a, b *flomesh.ServiceImport) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.imports[obj.Namespace+"/"+obj.Name] = obj
	return true
}

func (s *recordingSink) Delete(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.imports, namespace+"/"+name)
	return true
}

// endpoints returns the cluster keys serving the import namespace/name,
// or nil when there is none.
func (s *recordingSink) endpoints(namespace, name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	imp := s.imports[namespace+"/"+name]
	if imp == nil {
		return nil
	}
	var keys []string
	for _, p := range imp.Spec.Ports {
		for _, e := range p.Endpoints {
			keys = append(keys, e.ClusterKey)
		}
	}
	return keys
}

// recomputeAll recomputes every queued import.
func (f *fixture) recomputeAll() {
	for f.controller.serviceQueue.Len() > 0 {
		f.controller.processService()
	}
}

// A new Cluster gets a member, probed at once, and its status says it is
// Ready: the member's version, exports and the time fedmesh heard from it.
func TestNewClusterGetsStatus(t *testing.T) {
	cluster := newCluster("cluster-1")
	f := newFixture(t, cluster)
	f.members["cluster-1"].addExport(t, "ns", "web")
	f.members["cluster-1"].memberActions()

	f.sync("cluster-1")
	assert.Equal(t, []string{"cluster-1"}, f.controller.Members())
	assert.Equal(t, 1, f.controller.probeQueue.Len(), "the first probe is queued at once, not after the probe interval")

	outcome, err := f.probe("cluster-1")
	require.NoError(t, err)
	assert.Equal(t, probeReady, outcome)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 1, &start))
	f.verify()
	assert.Equal(t, []string{"get version", "get resource", "create selfsubjectrulesreviews"}, f.members["cluster-1"].memberActions())

	f.recomputeAll()
	assert.Equal(t, []string{"default/default/default/cluster-1"}, f.sink.endpoints("ns", "web"))
}

// A probe that fails makes the Cluster NotReady, with a reason and a
// message of fedmesh's own.
func TestProbeFailureMakesClusterNotReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster func() *v1alpha1.Cluster
		fault   func(m *fakeMember)
		want    metav1.Condition
		// version is what the member reported before failing.
		version string
	}{{
		name:  "unauthorized",
		fault: func(m *fakeMember) { m.setFailure(apierrors.NewUnauthorized("token expired")) },
		want:  condition(metav1.ConditionFalse, ReasonUnauthorized, "the member refused the kubeconfig's credentials"),
	}, {
		name: "forbidden",
		fault: func(m *fakeMember) {
			m.setFailure(apierrors.NewForbidden(schema.GroupResource{Resource: "version"}, "", fmt.Errorf("no")))
		},
		want: condition(metav1.ConditionFalse, ReasonForbidden, "the member refused a request of fedmesh's identity (HTTP 403)"),
	}, {
		name: "connection refused",
		fault: func(m *fakeMember) {
			m.setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
		},
		want: condition(metav1.ConditionFalse, ReasonUnreachable, "connection refused"),
	}, {
		name:    "no ServiceExport CRD",
		fault:   func(m *fakeMember) { m.kube.Resources = nil },
		want:    condition(metav1.ConditionFalse, ReasonCRDMissing, "the member has no serviceexports.flomesh.io CRD"),
		version: "v1.37.2",
	}, {
		name:  "permissions missing",
		fault: func(m *fakeMember) { m.denied.Store(true) },
		want: condition(metav1.ConditionFalse, ReasonForbidden, "the member's identity for fedmesh may not "+
			memberrbacFirstCheck()+" (see kubectl fedmesh join)"),
		version: "v1.37.2",
	}, {
		name: "unusable kubeconfig",
		cluster: func() *v1alpha1.Cluster {
			c := newCluster("cluster-1")
			c.Spec.Kubeconfig = "not a kubeconfig"
			return c
		},
		want: condition(metav1.ConditionFalse, ReasonInvalidKubeconfig, truncateMessage(
			members.Resolve(&v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{Kubeconfig: "not a kubeconfig"}}, nil, DefaultOptions().Members).Err.Error())),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := newCluster("cluster-1")
			if tc.cluster != nil {
				cluster = tc.cluster()
			}
			f := newFixture(t, cluster)
			if tc.fault != nil {
				tc.fault(f.members["cluster-1"])
			}
			f.sync("cluster-1")
			outcome, err := f.probe("cluster-1")
			require.NoError(t, err)
			assert.Equal(t, probeFailed, outcome)
			f.expectStatus(withStatus(cluster, tc.want, start, tc.version, 0, nil))
			f.verify()
		})
	}
}

// memberrbacFirstCheck is the permission a member that grants nothing
// lacks first.
func memberrbacFirstCheck() string {
	missing, _ := memberrbac.Missing(nil, memberrbac.Checks(memberrbac.Rules()))
	return missing.String()
}

// A member that fails and comes back is NotReady, then Ready again, each
// change written at once with its time of transition; the last heartbeat
// is the last time the member answered.
func TestRecoveredMemberBecomesReady(t *testing.T) {
	cluster := newCluster("cluster-1")
	f := newFixture(t, cluster)
	m := f.members["cluster-1"]
	f.sync("cluster-1")
	_, err := f.probe("cluster-1")
	require.NoError(t, err)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 0, &start))
	f.verify()

	f.clock.Step(2 * time.Second)
	failed := f.clock.Now()
	m.setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	outcome, err := f.probe("cluster-1")
	require.NoError(t, err)
	assert.Equal(t, probeFailed, outcome)
	unreachable := condition(metav1.ConditionFalse, ReasonUnreachable, "connection refused")
	f.expectStatus(withStatus(cluster, unreachable, failed, "v1.37.2", 0, &start))
	f.verify()

	f.clock.Step(time.Second)
	recovered := f.clock.Now()
	m.setFailure(nil)
	outcome, err = f.probe("cluster-1")
	require.NoError(t, err)
	assert.Equal(t, probeReady, outcome)
	f.expectStatus(withStatus(cluster, connected, recovered, "v1.37.2", 0, &recovered))
	f.verify()
}

// A status that could not be written is written on the next probe, which
// the queue's backoff brings sooner than the probe interval.
func TestStatusWriteFailureIsRetried(t *testing.T) {
	cluster := newCluster("cluster-1")
	f := newFixture(t, cluster)
	var failed atomic.Bool
	f.client.PrependReactor("update", "clusters", func(clienttesting.Action) (bool, runtime.Object, error) {
		if failed.CompareAndSwap(false, true) {
			return true, nil, apierrors.NewConflict(clustersResource.GroupResource(), cluster.Name, fmt.Errorf("stale"))
		}
		return false, nil, nil
	})
	f.sync("cluster-1")
	outcome, err := f.probe("cluster-1")
	require.Error(t, err)
	assert.True(t, apierrors.IsConflict(err))
	assert.Equal(t, probeFailed, outcome, "retried with backoff")
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 0, &start))
	f.verify()

	outcome, err = f.probe("cluster-1")
	require.NoError(t, err)
	assert.Equal(t, probeReady, outcome)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 0, &start))
	f.verify()
}

// An unchanged status is not written again before the heartbeat interval,
// and is at it, with the new heartbeat.
func TestUnchangedStatusNotRewrittenBeforeHeartbeat(t *testing.T) {
	cluster := newCluster("cluster-1")
	f := newFixture(t, cluster)
	heartbeat := f.controller.opts.HeartbeatInterval
	f.sync("cluster-1")
	_, err := f.probe("cluster-1")
	require.NoError(t, err)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 0, &start))
	f.verify()

	for _, step := range []time.Duration{2 * time.Second, heartbeat - 3*time.Second} {
		f.clock.Step(step)
		outcome, err := f.probe("cluster-1")
		require.NoError(t, err)
		assert.Equal(t, probeReady, outcome)
		f.verify() // nothing written
	}

	f.clock.Step(time.Second)
	now := f.clock.Now()
	_, err = f.probe("cluster-1")
	require.NoError(t, err)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 0, &now))
	f.verify()

	// A change is written at once, however recent the last write.
	f.clock.Step(time.Second)
	m := f.controller.members["cluster-1"]
	f.members["cluster-1"].addExport(t, "ns", "web")
	require.Eventually(t, func() bool { return m.exportCount() == 1 }, 5*time.Second, time.Millisecond)
	later := f.clock.Now()
	_, err = f.probe("cluster-1")
	require.NoError(t, err)
	f.expectStatus(withStatus(cluster, connected, start, "v1.37.2", 1, &later))
	f.verify()
}

// A member that stops being Ready keeps its endpoints in an import for the
// grace of the import's policy, or the server's without one, loses them
// when it ends, and regains them once Ready.
func TestUnavailableGrace(t *testing.T) {
	def := DefaultOptions().UnavailableGrace
	for _, tc := range []struct {
		name string
		// noPolicy leaves the service without a GlobalTrafficPolicy;
		// else its policy's spec.unavailableGraceSeconds is seconds.
		noPolicy bool
		seconds  *int32
		grace    time.Duration
	}{
		{name: "no policy: the server's grace", noPolicy: true, grace: def},
		{name: "a policy without a grace: the server's", grace: def},
		{name: "zero: withdrawn at once, as Lighthouse", seconds: ptr.To[int32](0), grace: 0},
		{name: "shorter than the server's", seconds: ptr.To[int32](5), grace: 5 * time.Second},
		{name: "an hour: kept, as Karmada", seconds: ptr.To[int32](3600), grace: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newCluster("cluster-1"))
			delays := f.recordDelays()
			if !tc.noPolicy {
				f.setPolicy("ns", "web", tc.seconds)
			}
			m := f.members["cluster-1"]
			m.addExport(t, "ns", "web")
			key := []string{"default/default/default/cluster-1"}
			f.sync("cluster-1")
			f.probeOK("cluster-1")
			f.recomputeAll()
			require.Equal(t, key, f.sink.endpoints("ns", "web"))

			// NotReady from this probe on.
			m.setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
			f.clock.Step(time.Second)
			f.probeOK("cluster-1")
			f.recomputeAll()
			if tc.grace == 0 {
				assert.Nil(t, f.sink.endpoints("ns", "web"), "withdrawn at once")
			} else {
				assert.Equal(t, key, f.sink.endpoints("ns", "web"), "within the grace")
				// The import is queued again for the end of its grace, and
				// only then: no probe, no polling.
				assert.Equal(t, tc.grace, delays.take("ns", "web"), "queued again for the end of the grace")
				f.clock.Step(tc.grace - time.Millisecond)
				f.expire("ns", "web")
				assert.Equal(t, key, f.sink.endpoints("ns", "web"), "a moment before the grace ends")
				assert.Equal(t, time.Millisecond, delays.take("ns", "web"))
				f.clock.Step(time.Millisecond)
				f.expire("ns", "web")
				assert.Nil(t, f.sink.endpoints("ns", "web"), "the grace is over")
				assert.Zero(t, delays.take("ns", "web"), "nothing more to wait for")
			}

			m.setFailure(nil)
			f.clock.Step(time.Second)
			f.probeOK("cluster-1")
			f.recomputeAll()
			assert.Equal(t, key, f.sink.endpoints("ns", "web"), "Ready again")
		})
	}
}

// A policy's grace that changes while a member is down applies at once,
// both ways: shortened past the time already spent, it withdraws the
// endpoints; lengthened, it brings them back.
func TestUnavailableGraceChanges(t *testing.T) {
	def := DefaultOptions().UnavailableGrace
	f := newFixture(t, newCluster("cluster-1"))
	delays := f.recordDelays()
	m := f.members["cluster-1"]
	m.addExport(t, "ns", "web")
	m.addExport(t, "ns", "other")
	key := []string{"default/default/default/cluster-1"}
	f.sync("cluster-1")
	f.probeOK("cluster-1")
	f.recomputeAll()

	m.setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	f.clock.Step(time.Second)
	f.probeOK("cluster-1")
	f.recomputeAll()
	require.Equal(t, def, delays.take("ns", "other"))
	f.clock.Step(10 * time.Second)
	require.Greater(t, def, 10*time.Second)
	require.Equal(t, key, f.sink.endpoints("ns", "web"), "within the server's grace")

	f.setPolicy("ns", "web", ptr.To[int32](5))
	f.recomputeAll()
	assert.Nil(t, f.sink.endpoints("ns", "web"), "the policy's grace is already over")
	assert.Equal(t, key, f.sink.endpoints("ns", "other"), "another service keeps the server's grace")

	f.setPolicy("ns", "web", ptr.To[int32](3600))
	f.recomputeAll()
	assert.Equal(t, key, f.sink.endpoints("ns", "web"), "a longer grace brings them back")

	// The server's grace ends for the other service; the policy's goes on.
	require.Equal(t, time.Hour-10*time.Second, delays.take("ns", "web"))
	f.clock.Step(def - 10*time.Second)
	f.expire("ns", "other")
	assert.Nil(t, f.sink.endpoints("ns", "other"))
	assert.Equal(t, key, f.sink.endpoints("ns", "web"))

	f.deletePolicy("ns", "web")
	f.recomputeAll()
	assert.Nil(t, f.sink.endpoints("ns", "web"), "without its policy, the server's grace, over")
}

// probeOK probes the member of name and expects the probe to write what
// it found.
func (f *fixture) probeOK(name string) {
	f.t.Helper()
	_, err := f.probe(name)
	require.NoError(f.t, err)
}

// setPolicy stores the GlobalTrafficPolicy namespace/name with grace as
// its spec.unavailableGraceSeconds, and tells the controller, as the
// informer would.
func (f *fixture) setPolicy(namespace, name string, grace *int32) {
	f.t.Helper()
	p := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.ActiveActiveLbType, UnavailableGraceSeconds: grace},
	}
	require.NoError(f.t, f.policies.Update(p))
	f.controller.enqueuePolicy(p)
}

// deletePolicy removes the GlobalTrafficPolicy namespace/name and tells
// the controller.
func (f *fixture) deletePolicy(namespace, name string) {
	f.t.Helper()
	p := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	require.NoError(f.t, f.policies.Delete(p))
	f.controller.enqueuePolicy(p)
}

// delayRecorder is the controller's service queue, recording the delay
// of each AddAfter: when an import asked to be recomputed again.
type delayRecorder struct {
	workqueue.TypedRateLimitingInterface[[2]string]
	mu     sync.Mutex
	delays map[[2]string]time.Duration
}

func (q *delayRecorder) AddAfter(k [2]string, d time.Duration) {
	q.mu.Lock()
	q.delays[k] = d
	q.mu.Unlock()
	q.TypedRateLimitingInterface.AddAfter(k, d)
}

// take returns the last delay asked for namespace/name, or zero, and
// forgets it.
func (q *delayRecorder) take(namespace, name string) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := [2]string{namespace, name}
	d := q.delays[k]
	delete(q.delays, k)
	return d
}

// recordDelays makes the controller's service queue record its delays.
// The delays themselves run on the real clock, far longer than a test:
// expire stands for the queue handing the import out when one ends.
func (f *fixture) recordDelays() *delayRecorder {
	q := &delayRecorder{TypedRateLimitingInterface: f.controller.serviceQueue, delays: map[[2]string]time.Duration{}}
	f.controller.serviceQueue = q
	return q
}

// expire recomputes namespace/name, as the service queue does when the
// delay the import asked for ends.
func (f *fixture) expire(namespace, name string) {
	f.controller.serviceQueue.Add([2]string{namespace, name})
	f.recomputeAll()
}

// A Cluster that goes away, however it goes, loses its member: the
// member's caches stop, its endpoints leave the imports, and it is not
// probed again.
func TestDeletedClusterDropsMember(t *testing.T) {
	for _, tc := range []struct {
		name string
		// leave takes the Cluster away.
		leave func(f *fixture, cluster *v1alpha1.Cluster)
	}{{
		name: "deleted",
		leave: func(f *fixture, cluster *v1alpha1.Cluster) {
			require.NoError(f.t, f.indexer.Delete(cluster))
			f.sync(cluster.Name)
		},
	}, {
		name: "being deleted",
		leave: func(f *fixture, cluster *v1alpha1.Cluster) {
			terminating := cluster.DeepCopy()
			terminating.DeletionTimestamp = &metav1.Time{Time: start}
			require.NoError(f.t, f.indexer.Update(terminating))
			f.sync(cluster.Name)
		},
	}, {
		name: "replaced, then deleted",
		leave: func(f *fixture, cluster *v1alpha1.Cluster) {
			moved := cluster.DeepCopy()
			moved.Spec.GatewayHost = "192.0.2.2"
			require.NoError(f.t, f.indexer.Update(moved))
			old := f.controller.members[cluster.Name]
			f.sync(cluster.Name)
			require.NotSame(f.t, old, f.controller.members[cluster.Name], "a new member for the new gateway")
			assertStopped(f.t, old)
			require.NoError(f.t, f.indexer.Delete(moved))
			f.sync(cluster.Name)
		},
	}, {
		name: "deleted while its status is written",
		leave: func(f *fixture, cluster *v1alpha1.Cluster) {
			f.client.PrependReactor("update", "clusters", func(clienttesting.Action) (bool, runtime.Object, error) {
				assert.NoError(f.t, f.indexer.Delete(cluster))
				assert.NoError(f.t, f.controller.syncCluster(f.ctx, cluster.Name))
				return false, nil, nil
			})
			f.clock.Step(f.controller.opts.HeartbeatInterval)
			_, err := f.probe(cluster.Name)
			require.NoError(f.t, err)
			f.client.ClearActions()
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := newCluster("cluster-1")
			other := newCluster("cluster-2")
			f := newFixture(t, cluster, other)
			f.members["cluster-1"].addExport(t, "ns", "web")
			for _, name := range []string{"cluster-1", "cluster-2"} {
				f.sync(name)
				_, err := f.probe(name)
				require.NoError(t, err)
			}
			f.recomputeAll()
			require.NotNil(t, f.sink.endpoints("ns", "web"))
			f.client.ClearActions()
			m := f.controller.members["cluster-1"]

			tc.leave(f, cluster)
			assert.Equal(t, []string{"cluster-2"}, f.controller.Members())
			assertStopped(t, m)
			f.recomputeAll()
			assert.Nil(t, f.sink.endpoints("ns", "web"), "its endpoints left the imports")

			outcome, err := f.probe("cluster-1")
			require.NoError(t, err)
			assert.Equal(t, probeDropped, outcome, "not probed again")
			f.verify() // nothing written
		})
	}
}

func assertStopped(t *testing.T, m *member) {
	t.Helper()
	select {
	case <-m.stopped:
	default:
		t.Error("the member was not stopped")
	}
}

// The probe queue brings a member back at the probe interval while it is
// Ready, sooner and backing off while it is not, and forgets a Cluster
// that has no member any more.
func TestProbeScheduling(t *testing.T) {
	f := newFixture(t, newCluster("cluster-1"))
	q := f.controller.probeQueue
	interval := f.controller.opts.ProbeInterval
	// waitForQueued waits until the queue holds n names: the delaying
	// queue moves them on its own goroutine.
	waitForQueued := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return q.Len() == n }, 5*time.Second, time.Millisecond)
	}
	// step moves the clock once the queue waits for a delayed name: it
	// arms its timer on its own goroutine, from the time it last read, so
	// a step before that would be missed.
	step := func(d time.Duration) {
		t.Helper()
		// The queue's heartbeat, and the timer of the delayed name.
		require.Eventually(t, func() bool { return f.clock.Waiters() == 2 }, 5*time.Second, time.Millisecond)
		f.clock.Step(d)
	}
	f.sync("cluster-1")
	waitForQueued(1)

	// Ready: again after the interval, and not before.
	require.True(t, f.controller.processProbe(f.ctx))
	assert.Zero(t, q.NumRequeues("cluster-1"))
	step(interval - time.Millisecond)
	assert.Never(t, func() bool { return q.Len() > 0 }, 20*time.Millisecond, time.Millisecond)
	step(time.Millisecond)
	waitForQueued(1)

	// Failing: again after a delay that doubles, up to the interval.
	f.members["cluster-1"].setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	delay := probeRetryBase
	for i := 1; i <= 6; i++ {
		require.True(t, f.controller.processProbe(f.ctx))
		assert.Equal(t, i, q.NumRequeues("cluster-1"))
		step(delay)
		waitForQueued(1)
		delay = min(2*delay, interval)
	}

	// Recovered: the failures are forgotten.
	f.members["cluster-1"].setFailure(nil)
	require.True(t, f.controller.processProbe(f.ctx))
	assert.Zero(t, q.NumRequeues("cluster-1"))
	step(interval)
	waitForQueued(1)

	// Deleted: not again.
	require.NoError(t, f.indexer.Delete(newCluster("cluster-1")))
	f.sync("cluster-1")
	require.True(t, f.controller.processProbe(f.ctx))
	assert.Equal(t, 1, f.clock.Waiters(), "only the queue's heartbeat: nothing delayed")
	assert.Zero(t, q.Len())
}

// Run probes every member with its workers, follows a member's failure
// and a Cluster's deletion, and stops what it started when its context
// is done. Under the race detector, this is the test of the controller's
// concurrency.
func TestRun(t *testing.T) {
	clusters := []*v1alpha1.Cluster{newCluster("cluster-1"), newCluster("cluster-2"), newCluster("cluster-3")}
	objects := make([]runtime.Object, len(clusters))
	fakes := map[string]*fakeMember{}
	for i, c := range clusters {
		objects[i] = c
		fakes[serverOf(c.Name)] = newFakeMember()
		fakes[serverOf(c.Name)].addExport(t, "ns", "web")
	}
	client := fake.NewSimpleClientset(objects...)
	factory := fedinformers.NewSharedInformerFactory(client, 0)
	opts := DefaultOptions()
	opts.ProbeInterval, opts.UnavailableGrace, opts.ProbeWorkers = 20*time.Millisecond, 100*time.Millisecond, 2
	sink := newRecordingSink()
	c := New(client, factory, nil, sink, opts)
	c.newClients = func(cfg *rest.Config) (kubernetes.Interface, versioned.Interface, error) {
		m := fakes[cfg.Host]
		return m.kube, m.fedmesh, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	factory.Start(ctx.Done())
	go func() {
		defer close(done)
		c.Run(ctx)
	}()

	ready := func(name string) metav1.ConditionStatus {
		cluster, err := client.FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		for _, cond := range cluster.Status.Conditions {
			if cond.Type == ConditionReady {
				return cond.Status
			}
		}
		return ""
	}
	require.Eventually(t, func() bool {
		return ready("cluster-1") == metav1.ConditionTrue && ready("cluster-2") == metav1.ConditionTrue &&
			ready("cluster-3") == metav1.ConditionTrue && len(sink.endpoints("ns", "web")) == 3
	}, 10*time.Second, 5*time.Millisecond)

	fakes[serverOf("cluster-2")].setFailure(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	require.Eventually(t, func() bool {
		return ready("cluster-2") == metav1.ConditionFalse && len(sink.endpoints("ns", "web")) == 2
	}, 10*time.Second, 5*time.Millisecond, "NotReady, then withdrawn after the grace")

	require.NoError(t, client.FlomeshV1alpha1().Clusters().Delete(ctx, "cluster-3", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		return len(c.Members()) == 2 && len(sink.endpoints("ns", "web")) == 1
	}, 10*time.Second, 5*time.Millisecond)

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		assertStopped(t, m)
	}
}
