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
package apiserver

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	genericinitializer "k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	flomeshv1alpha1 "github.com/fedmesh/fedmesh/generated/clientset/versioned/typed/flomesh/v1alpha1"
	fedmeshadmission "github.com/fedmesh/fedmesh/pkg/admission"
	admissioninitializer "github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/protection"
	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
)

// The tests of protection run on a second server, on the same etcd, that
// runs fedmesh's admission plugins and the cluster-protection controller as
// fedmesh-apiserver does on a control plane, and a gate: a last validating
// plugin that holds the requests a test names where the storage would
// write them next.

// protected is the second server, started by the first test that needs it.
var protected struct {
	once    sync.Once
	err     error
	config  *rest.Config
	imports *serviceimport.Aggregate
	gate    *gate
}

func protectedServer(t *testing.T) flomeshv1alpha1.FlomeshV1alpha1Interface {
	t.Helper()
	protected.once.Do(func() {
		protected.gate = &gate{Handler: admission.NewHandler(admission.Create, admission.Update, admission.Delete), holds: map[string]*hold{}}
		var server *Server
		server, protected.config, protected.err = startServer(serverCtx, serverOptions{name: "protected", configure: func(c *Config) error {
			// The tests feed the imports and play the members' part in
			// Cluster status.
			c.ExtraConfig.DisableClusterset = true
			return withAdmission(c, protected.gate)
		}})
		if server != nil {
			protected.imports = server.Imports
		}
	})
	require.NoError(t, protected.err, "starting the protected server")
	c, err := versioned.NewForConfig(protected.config)
	require.NoError(t, err)
	return c.FlomeshV1alpha1()
}

// withAdmission gives the server fedmesh's admission plugins, in their
// order, then the gate: standalone, a server has no admission chain, as
// the generic one needs the core API.
func withAdmission(c *Config, g *gate) error {
	plugins := admission.NewPlugins()
	fedmeshadmission.Register(plugins)
	plugins.Register("TestGate", func(io.Reader) (admission.Interface, error) { return g, nil })
	initializers := admission.PluginInitializers{
		authorizerInitializer{c.GenericConfig.Authorization.Authorizer},
		admissioninitializer.New(c.ExtraConfig.Informers, c.ExtraConfig.Client),
	}
	var chain []admission.Interface
	for _, name := range append(append([]string(nil), fedmeshadmission.PluginNames...), "TestGate") {
		p, err := plugins.InitPlugin(name, nil, initializers)
		if err != nil {
			return err
		}
		chain = append(chain, p)
	}
	c.GenericConfig.AdmissionControl = admission.NewChainHandler(chain...)
	return nil
}

type authorizerInitializer struct{ authorizer.Authorizer }

func (i authorizerInitializer) Initialize(p admission.Interface) {
	if wants, ok := p.(genericinitializer.WantsAuthorizer); ok {
		wants.SetAuthorizer(i.Authorizer)
	}
}

// gate holds the requests on the objects a test names, after the other
// plugins admitted them, until the test releases them: what the storage
// does next is what a request does at that moment.
type gate struct {
	*admission.Handler
	mu    sync.Mutex
	holds map[string]*hold
}

type hold struct {
	g       *gate
	key     string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
	done    sync.Once
}

// hold holds the requests on resource/name from now on.
func (g *gate) hold(resource, name string) *hold {
	h := &hold{g: g, key: resource + "/" + name, reached: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holds[h.key] = h
	return h
}

// wait returns once a request is held.
func (h *hold) wait(t *testing.T) {
	t.Helper()
	select {
	case <-h.reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("no request on %s reached the gate", h.key)
	}
}

// let lets the held requests, and those to come, go on.
func (h *hold) let() {
	h.done.Do(func() {
		h.g.mu.Lock()
		delete(h.g.holds, h.key)
		h.g.mu.Unlock()
		close(h.release)
	})
}

func (g *gate) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	g.mu.Lock()
	h := g.holds[a.GetResource().Resource+"/"+a.GetName()]
	g.mu.Unlock()
	if h == nil || a.GetSubresource() != "" {
		return nil
	}
	h.once.Do(func() { close(h.reached) })
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func policyTargeting(name string, keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType},
	}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
	}
	return p
}

func keyOf(name string) string { return "default/default/default/" + name }

// eventuallyGone waits until the Cluster is gone.
func eventuallyGone(t *testing.T, client flomeshv1alpha1.FlomeshV1alpha1Interface, name string) {
	t.Helper()
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := client.Clusters().Get(context.Background(), name, metav1.GetOptions{})
		assert.True(c, apierrors.IsNotFound(err), "Cluster %s is gone: %v", name, err)
	}, 30*time.Second, 20*time.Millisecond)
}

// dangling returns the targets of stored policies of namespace that no
// stored Cluster has, being deleted or not.
func dangling(t *testing.T, client flomeshv1alpha1.FlomeshV1alpha1Interface, namespace string) []string {
	t.Helper()
	ctx := ctxFor(t)
	clusters, err := client.Clusters().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	keys := sets.New[string]()
	for i := range clusters.Items {
		keys.Insert(protection.KeyOf(&clusters.Items[i]))
	}
	policies, err := client.GlobalTrafficPolicies(namespace).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var out []string
	for _, p := range policies.Items {
		for _, target := range p.Spec.Targets {
			if !keys.Has(target.ClusterKey) {
				out = append(out, p.Namespace+"/"+p.Name+" -> "+target.ClusterKey)
			}
		}
	}
	return out
}

func TestClusterGetsTheFinalizer(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	c, err := client.Clusters().Create(ctx, newCluster(t, "finalized"), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{protection.Finalizer}, c.Finalizers, "admission puts it on a new Cluster")

	// Removed by hand, it comes back.
	c.Finalizers = nil
	_, err = client.Clusters().Update(ctx, c, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		got, err := client.Clusters().Get(ctx, "finalized", metav1.GetOptions{})
		require.NoError(ct, err)
		assert.Equal(ct, []string{protection.Finalizer}, got.Finalizers)
	}, 30*time.Second, 20*time.Millisecond)

	// A Cluster no policy targets goes at once.
	require.NoError(t, client.Clusters().Delete(ctx, "finalized", metav1.DeleteOptions{}))
	eventuallyGone(t, client, "finalized")
}

// The window: a policy admitted while its Cluster is live, then the
// Cluster's deletion, then the policy stored. Admission cannot see the
// policy, nor can a list: the finalizer holds the Cluster because the
// controller knows the policy's write is in progress.
func TestRaceAdmittedPolicyHoldsItsCluster(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	_, err := client.Clusters().Create(ctx, newCluster(t, "race-held"), metav1.CreateOptions{})
	require.NoError(t, err)

	h := protected.gate.hold("globaltrafficpolicies", "held")
	defer h.let()
	created := make(chan error, 1)
	go func() {
		_, err := client.GlobalTrafficPolicies("race").Create(ctx, policyTargeting("held", keyOf("race-held")), metav1.CreateOptions{})
		created <- err
	}()
	h.wait(t)

	require.NoError(t, client.Clusters().Delete(ctx, "race-held", metav1.DeleteOptions{}),
		"no policy is stored yet: admission lets the deletion begin")
	assert.Never(t, func() bool {
		_, err := client.Clusters().Get(ctx, "race-held", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, time.Second, 50*time.Millisecond, "the Cluster goes while a policy naming it is on its way")

	h.let()
	require.NoError(t, <-created)
	c, err := client.Clusters().Get(ctx, "race-held", metav1.GetOptions{})
	require.NoError(t, err, "the policy is stored: its Cluster stays")
	assert.NotNil(t, c.DeletionTimestamp)
	assert.Empty(t, dangling(t, client, "race"))

	// The policy says its target is going.
	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		p, err := client.GlobalTrafficPolicies("race").Get(ctx, "held", metav1.GetOptions{})
		require.NoError(ct, err)
		cond := meta.FindStatusCondition(p.Status.Conditions, protection.ConditionResolved)
		require.NotNil(ct, cond)
		assert.Equal(ct, metav1.ConditionFalse, cond.Status)
		assert.Equal(ct, protection.ReasonUnknownTargets, cond.Reason)
		assert.Contains(ct, cond.Message, `default/default/default/race-held (Cluster "race-held", of this key, is being deleted)`)
		assert.Equal(ct, []v1alpha1.TargetStatus{{ClusterKey: keyOf("race-held"), Message: `Cluster "race-held", of this key, is being deleted`}}, p.Status.Targets)
	}, 30*time.Second, 20*time.Millisecond)

	// Deleting the policy lets the Cluster go.
	require.NoError(t, client.GlobalTrafficPolicies("race").Delete(ctx, "held", metav1.DeleteOptions{}))
	eventuallyGone(t, client, "race-held")
}

// The window the other way round: the Cluster's deletion judged, then a
// policy admitted and stored before the deletion is written.
func TestRacePolicyStoredBetweenJudgementAndDelete(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	_, err := client.Clusters().Create(ctx, newCluster(t, "race-judged"), metav1.CreateOptions{})
	require.NoError(t, err)

	h := protected.gate.hold("clusters", "race-judged")
	defer h.let()
	deleted := make(chan error, 1)
	go func() { deleted <- client.Clusters().Delete(ctx, "race-judged", metav1.DeleteOptions{}) }()
	h.wait(t)

	_, err = client.GlobalTrafficPolicies("race").Create(ctx, policyTargeting("judged", keyOf("race-judged")), metav1.CreateOptions{})
	require.NoError(t, err, "the Cluster is still live")
	h.let()
	require.NoError(t, <-deleted, "admission judged it before the policy")

	assert.Never(t, func() bool {
		_, err := client.Clusters().Get(ctx, "race-judged", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, time.Second, 50*time.Millisecond, "the Cluster goes while a policy names it")
	assert.Empty(t, dangling(t, client, "race"))

	require.NoError(t, client.GlobalTrafficPolicies("race").Delete(ctx, "judged", metav1.DeleteOptions{}))
	eventuallyGone(t, client, "race-judged")
}

// A Cluster deleted first refuses the policy; one whose deletion began
// refuses it too.
func TestRaceDeletedClusterRefusesPolicy(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	_, err := client.Clusters().Create(ctx, newCluster(t, "race-gone"), metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, client.Clusters().Delete(ctx, "race-gone", metav1.DeleteOptions{}))
	_, err = client.GlobalTrafficPolicies("race").Create(ctx, policyTargeting("gone", keyOf("race-gone")), metav1.CreateOptions{})
	assert.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
	eventuallyGone(t, client, "race-gone")
}

// Deleting a policy right after creating it frees its Cluster at once.
func TestRacePolicyDeletedThenCluster(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	_, err := client.Clusters().Create(ctx, newCluster(t, "race-freed"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.GlobalTrafficPolicies("race").Create(ctx, policyTargeting("freed", keyOf("race-freed")), metav1.CreateOptions{})
	require.NoError(t, err)

	err = client.Clusters().Delete(ctx, "race-freed", metav1.DeleteOptions{})
	assert.True(t, apierrors.IsForbidden(err), "admission refuses while the policy names it: %v", err)
	assert.ErrorContains(t, err, "race/freed")

	require.NoError(t, client.GlobalTrafficPolicies("race").Delete(ctx, "freed", metav1.DeleteOptions{}))
	require.NoError(t, client.Clusters().Delete(ctx, "race-freed", metav1.DeleteOptions{}))
	eventuallyGone(t, client, "race-freed")
}

// Creates and deletes at once, many times over: no policy is ever stored
// naming a Cluster that is gone; a Cluster whose deletion went through
// while a policy names it stays until the policy goes.
func TestRaceConcurrent(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	const n = 40
	name := func(i int) string { return fmt.Sprintf("race-%02d", i) }
	for i := range n {
		_, err := client.Clusters().Create(ctx, newCluster(t, name(i)), metav1.CreateOptions{})
		require.NoError(t, err)
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	created := make([]error, n)
	deleted := make([]error, n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			// Policies also name a Cluster that stays, so that they
			// meet on it too.
			_, created[i] = client.GlobalTrafficPolicies("concurrent").Create(ctx,
				policyTargeting(name(i), keyOf(name(i)), keyOf(name(0))), metav1.CreateOptions{})
		}()
		go func() {
			defer wg.Done()
			<-start
			if i == 0 {
				return
			}
			deleted[i] = client.Clusters().Delete(ctx, name(i), metav1.DeleteOptions{})
		}()
	}
	close(start)
	wg.Wait()

	var held []string
	for i := 1; i < n; i++ {
		if created[i] != nil {
			assert.True(t, apierrors.IsInvalid(created[i]), "policy %d: %v", i, created[i])
		}
		if deleted[i] != nil {
			assert.True(t, apierrors.IsForbidden(deleted[i]), "cluster %d: %v", i, deleted[i])
		}
		if created[i] == nil && deleted[i] == nil {
			held = append(held, name(i))
		}
	}
	t.Logf("of %d pairs, %d saw both the policy and the deletion of its Cluster go through", n-1, len(held))
	assert.Empty(t, dangling(t, client, "concurrent"))
	for _, c := range held {
		got, err := client.Clusters().Get(ctx, c, metav1.GetOptions{})
		if assert.NoError(t, err, "Cluster %s, which a policy names, stays", c) {
			assert.NotNil(t, got.DeletionTimestamp)
		}
	}

	// Once the policies go, so do the Clusters whose deletion went through.
	for i := range n {
		if created[i] == nil {
			require.NoError(t, client.GlobalTrafficPolicies("concurrent").Delete(ctx, name(i), metav1.DeleteOptions{}))
		}
	}
	for i := 1; i < n; i++ {
		if deleted[i] == nil {
			eventuallyGone(t, client, name(i))
		}
	}
}

// The status of a policy tells, per target, whether the key is a live
// registered Cluster, whether it is Ready and whether it exports the
// service, and follows the Clusters and the import.
func TestPolicyStatus(t *testing.T) {
	ctx := ctxFor(t)
	client := protectedServer(t)
	for _, name := range []string{"status-1", "status-2"} {
		_, err := client.Clusters().Create(ctx, newCluster(t, name), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	setReady := func(name string, status metav1.ConditionStatus, reason string) {
		t.Helper()
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c, err := client.Clusters().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: clusterset.ConditionReady, Status: status, Reason: reason})
			_, err = client.Clusters().UpdateStatus(ctx, c, metav1.UpdateOptions{})
			return err
		}))
	}
	setReady("status-1", metav1.ConditionTrue, "Connected")
	setReady("status-2", metav1.ConditionFalse, "Unreachable")
	export := func(keys ...string) {
		si := &flomesh.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "status", Name: "httpbin"}}
		for _, k := range keys {
			si.Status.Clusters = append(si.Status.Clusters, flomesh.SourceStatus{Cluster: k})
		}
		protected.imports.Set(si, func(a, b *flomesh.ServiceImport) bool { return apiequality.Semantic.DeepEqual(a.Status, b.Status) })
	}
	export(keyOf("status-1"))

	_, err := client.GlobalTrafficPolicies("status").Create(ctx, policyTargeting("httpbin", keyOf("status-1"), keyOf("status-2")), metav1.CreateOptions{})
	require.NoError(t, err)
	waitStatus := func(msg string, want []v1alpha1.TargetStatus) {
		t.Helper()
		assert.EventuallyWithT(t, func(ct *assert.CollectT) {
			p, err := client.GlobalTrafficPolicies("status").Get(ctx, "httpbin", metav1.GetOptions{})
			require.NoError(ct, err)
			assert.Equal(ct, want, p.Status.Targets)
			cond := meta.FindStatusCondition(p.Status.Conditions, protection.ConditionResolved)
			require.NotNil(ct, cond)
			assert.Equal(ct, metav1.ConditionTrue, cond.Status)
			assert.Equal(ct, p.Generation, cond.ObservedGeneration)
			for _, mf := range p.ManagedFields {
				if mf.Subresource == "status" {
					assert.Equal(ct, protection.FieldManager, mf.Manager, "one writer of the status")
				}
			}
		}, 30*time.Second, 20*time.Millisecond, msg)
	}
	waitStatus("as created", []v1alpha1.TargetStatus{
		{ClusterKey: keyOf("status-1"), Known: true, Ready: true, Exported: true},
		{ClusterKey: keyOf("status-2"), Known: true, Message: "not Ready (Unreachable); does not export the service"},
	})

	setReady("status-2", metav1.ConditionTrue, "Connected")
	waitStatus("Ready flips", []v1alpha1.TargetStatus{
		{ClusterKey: keyOf("status-1"), Known: true, Ready: true, Exported: true},
		{ClusterKey: keyOf("status-2"), Known: true, Ready: true, Message: "does not export the service"},
	})

	export(keyOf("status-1"), keyOf("status-2"))
	waitStatus("the import changes", []v1alpha1.TargetStatus{
		{ClusterKey: keyOf("status-1"), Known: true, Ready: true, Exported: true},
		{ClusterKey: keyOf("status-2"), Known: true, Ready: true, Exported: true},
	})

	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := client.GlobalTrafficPolicies("status").Get(ctx, "httpbin", metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Spec.Targets = p.Spec.Targets[1:]
		_, err = client.GlobalTrafficPolicies("status").Update(ctx, p, metav1.UpdateOptions{})
		return err
	}))
	waitStatus("the policy changes", []v1alpha1.TargetStatus{
		{ClusterKey: keyOf("status-2"), Known: true, Ready: true, Exported: true},
	})

	// The controller's own write brings it back to the policy, which it
	// leaves alone when nothing changed.
	settled, err := client.GlobalTrafficPolicies("status").Get(ctx, "httpbin", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Never(t, func() bool {
		p, err := client.GlobalTrafficPolicies("status").Get(ctx, "httpbin", metav1.GetOptions{})
		return err != nil || p.ResourceVersion != settled.ResourceVersion
	}, time.Second, 100*time.Millisecond, "the status is written again and again")
}
