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

package integration

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

const (
	key1 = "default/default/default/cluster-1"
	key2 = "default/default/default/cluster-2"
	key3 = "default/default/default/cluster-3"
)

var managedBy = metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=fedmesh-syncer"}

// memberImports returns, by name, the cluster keys of the endpoints of
// every ServiceImport in namespace httpbin of a member.
func memberImports(ctx context.Context, m *framework.Cluster) (map[string][]string, error) {
	list, err := m.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, si := range list.Items {
		keys := []string{}
		for _, p := range si.Spec.Ports {
			for _, e := range p.Endpoints {
				keys = append(keys, e.ClusterKey)
			}
		}
		sort.Strings(keys)
		out[si.Name] = keys
	}
	return out, nil
}

// eventuallyImports waits until a member holds exactly the imports want.
func eventuallyImports(t *testing.T, ctx context.Context, m *framework.Cluster, want map[string][]string, within time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := memberImports(ctx, m)
		if assert.NoError(c, err) {
			assert.Equal(c, want, got, "ServiceImports of %s", m.Name)
		}
	}, within, 50*time.Millisecond)
}

func policyNames(ctx context.Context, m *framework.Cluster) ([]string, error) {
	list, err := m.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, p := range list.Items {
		names = append(names, p.Name+"="+string(p.Spec.LbType))
	}
	return names, nil
}

func ingressPaths(ctx context.Context, m *framework.Cluster) (map[string][]string, error) {
	list, err := m.Kube().NetworkingV1().Ingresses("httpbin").List(ctx, managedBy)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, ing := range list.Items {
		paths := []string{}
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				paths = append(paths, p.Path+" -> "+p.Backend.Service.Name)
			}
		}
		out[ing.Name] = paths
	}
	return out, nil
}

// exportHTTPBin is deployHTTPBin where the namespace may exist already, as
// the syncer creates it in a member that imports from another.
func exportHTTPBin(t *testing.T, ctx context.Context, m *framework.Cluster) {
	t.Helper()
	kube := m.Kube()
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	for _, name := range []string{"httpbin", "httpbin-" + m.Name} {
		_, err := kube.CoreV1().Services("httpbin").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "pipy"},
				Ports:    []corev1.ServicePort{{Name: "pipy", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	out := kubectls(t)[0].run(t, m.KubeconfigPath, seed(t, "serviceexport-httpbin.yaml", map[string]string{"CLUSTER_NAME": m.Name}), "apply", "-f", "-")
	assert.Contains(t, out, "serviceexport.flomesh.io/httpbin created")
}

// syncedAndIdle waits until the leading syncer has synced every member
// of names and has stopped reconciling, and returns its write count.
func syncedAndIdle(t *testing.T, ctx context.Context, f *framework.Federation, names ...string) (*framework.Syncer, float64) {
	t.Helper()
	var leader *framework.Syncer
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		l, err := f.SyncerLeader(ctx)
		if !assert.NoError(c, err) || !assert.NotNil(c, l, "a syncer leads") {
			return
		}
		leader = l
		for _, n := range names {
			v, err := l.Metric(ctx, "fedmesh_syncer_member_synced", map[string]string{"cluster": n})
			assert.NoError(c, err)
			assert.Equal(c, 1.0, v, "%s synced by %s", n, l.Name)
		}
	}, 20*time.Second, 100*time.Millisecond)
	last := -1.0
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v, err := leader.Metric(ctx, "fedmesh_syncer_reconciles_total", nil)
		if !assert.NoError(c, err) {
			return
		}
		assert.Positive(c, v)
		assert.Equal(c, last, v, "reconciles settled")
		last = v
	}, 20*time.Second, 500*time.Millisecond)
	writes, err := leader.Writes(ctx)
	require.NoError(t, err)
	return leader, writes
}

// TestSyncer is the seed's walkthrough as the members see it: the syncer
// writes into each member what the others export, the policies and the
// Ingresses, cleans up after itself, survives its own restarts and
// hand-overs, and waits for no dead member.
func TestSyncer(t *testing.T) {
	f := framework.Start(t, framework.Options{
		Members:        []string{"cluster-1", "cluster-2", "cluster-3", "cluster-4"},
		FedmeshArgs:    []string{"--member-unavailable-grace=3s"},
		WithSyncer:     true,
		SyncerReplicas: 2,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c1, c2, c3, c4 := f.Member("cluster-1"), f.Member("cluster-2"), f.Member("cluster-3"), f.Member("cluster-4")
	cp := f.ControlPlane.KubeconfigPath
	k := kubectls(t)[0]

	start := time.Now()
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		register(t, ctx, f, name, int32(81+i))
	}
	t.Logf("cluster-1..3 Ready, with the syncer's CRDs, %v after registering", time.Since(start).Round(time.Millisecond))
	exportHTTPBin(t, ctx, c1)
	exportHTTPBin(t, ctx, c3)

	t.Run("the seed flow", func(t *testing.T) {
		start := time.Now()
		eventuallyImports(t, ctx, c2, map[string][]string{
			"httpbin":           {key1, key3},
			"httpbin-cluster-1": {key1},
			"httpbin-cluster-3": {key3},
		}, 15*time.Second)
		t.Logf("cluster-2 holds the imports %v after the exports", time.Since(start).Round(time.Millisecond))
		// A member never imports its own endpoints.
		eventuallyImports(t, ctx, c1, map[string][]string{"httpbin": {key3}, "httpbin-cluster-3": {key3}}, 5*time.Second)
		eventuallyImports(t, ctx, c3, map[string][]string{"httpbin": {key1}, "httpbin-cluster-1": {key1}}, 5*time.Second)

		ns, err := c2.Kube().CoreV1().Namespaces().Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "fedmesh-syncer", ns.Labels["app.kubernetes.io/managed-by"], "the syncer created the namespace")

		si, err := c2.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, v1alpha1.ServiceImportSpec{
			Type: v1alpha1.ClusterSetIP, ServiceAccountName: "*",
			Ports: []v1alpha1.ServicePort{{Name: "pipy", Protocol: "TCP", Port: 8080, Endpoints: []v1alpha1.Endpoint{
				{ClusterKey: key1, Target: v1alpha1.Target{Host: "127.0.0.1", IP: "127.0.0.1", Port: 81, Path: "/cluster-1/httpbin-mesh"}},
				{ClusterKey: key3, Target: v1alpha1.Target{Host: "127.0.0.1", IP: "127.0.0.1", Port: 83, Path: "/cluster-3/httpbin-mesh"}},
			}}},
		}, si.Spec)

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			got, err := ingressPaths(ctx, c1)
			if assert.NoError(c, err) {
				assert.Equal(c, map[string][]string{
					"fedmesh-httpbin":           {"/cluster-1/httpbin-mesh -> httpbin"},
					"fedmesh-httpbin-cluster-1": {"/cluster-1/httpbin-mesh-cluster-1 -> httpbin-cluster-1"},
				}, got)
			}
			got, err = ingressPaths(ctx, c2)
			if assert.NoError(c, err) {
				assert.Empty(c, got, "an importer exposes nothing")
			}
		}, 5*time.Second, 50*time.Millisecond)
		ing, err := c1.Kube().NetworkingV1().Ingresses("httpbin").Get(ctx, "fedmesh-httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, ptr.To("pipy"), ing.Spec.IngressClassName)
		assert.Equal(t, ptr.To(networkingv1.PathTypePrefix), ing.Spec.Rules[0].HTTP.Paths[0].PathType)

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			e, err := c3.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
			if assert.NoError(c, err) {
				assert.True(c, meta.IsStatusConditionTrue(e.Status.Conditions, "Valid"), "Valid: %+v", e.Status.Conditions)
				assert.True(c, meta.IsStatusConditionFalse(e.Status.Conditions, "Conflict"), "Conflict: %+v", e.Status.Conditions)
			}
		}, 5*time.Second, 50*time.Millisecond)
		out := k.run(t, c3.KubeconfigPath, "", "get", "sexp", "-n", "httpbin")
		assert.Regexp(t, `(?m)^httpbin +True `, out)
	})

	t.Run("the seed's policy reaches the members and leaves with its deletion", func(t *testing.T) {
		k.run(t, cp, "", "create", "namespace", "httpbin")
		k.run(t, cp, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		start := time.Now()
		for _, m := range []*framework.Cluster{c1, c2, c3} {
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				got, err := policyNames(ctx, m)
				if assert.NoError(c, err) {
					assert.Equal(c, []string{"httpbin=FailOver"}, got, m.Name)
				}
			}, 5*time.Second, 50*time.Millisecond)
		}
		t.Logf("policy in cluster-1..3 %v after applying it", time.Since(start).Round(time.Millisecond))
		gtp, err := c2.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, []v1alpha1.TrafficTarget{{ClusterKey: key1}, {ClusterKey: key3}}, gtp.Spec.Targets)

		k.run(t, cp, "", "delete", "gtp", "httpbin", "-n", "httpbin")
		start = time.Now()
		for _, m := range []*framework.Cluster{c1, c2, c3} {
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				got, err := policyNames(ctx, m)
				if assert.NoError(c, err) {
					assert.Empty(c, got, m.Name)
				}
			}, 2*time.Second, 50*time.Millisecond)
		}
		t.Logf("policy gone from cluster-1..3 %v after deleting it", time.Since(start).Round(time.Millisecond))
	})

	t.Run("an export's gateway settings reach its Ingress and leave with them", func(t *testing.T) {
		exports := c1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin")
		setSticky := func(sticky bool) {
			t.Helper()
			require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
				e, err := exports.Get(ctx, "httpbin", metav1.GetOptions{})
				if err != nil {
					return err
				}
				e.Spec.SessionSticky = sticky
				e.Spec.LoadBalancer = v1alpha1.RoundRobinLoadBalancer
				if sticky {
					e.Spec.LoadBalancer = v1alpha1.HashingLoadBalancer
				}
				_, err = exports.Update(ctx, e, metav1.UpdateOptions{})
				return err
			}))
		}
		annotations := func(c *assert.CollectT) map[string]string {
			ing, err := c1.Kube().NetworkingV1().Ingresses("httpbin").Get(ctx, "fedmesh-httpbin", metav1.GetOptions{})
			if !assert.NoError(c, err) {
				return nil
			}
			return ing.Annotations
		}
		setSticky(true)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			a := annotations(c)
			assert.Equal(c, "true", a["pipy.ingress.kubernetes.io/session-sticky"])
			assert.Equal(c, "HashingLoadBalancer", a["pipy.ingress.kubernetes.io/lb-type"])
		}, 5*time.Second, 50*time.Millisecond)
		setSticky(false)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			a := annotations(c)
			assert.NotContains(c, a, "pipy.ingress.kubernetes.io/session-sticky")
			assert.Equal(c, "RoundRobinLoadBalancer", a["pipy.ingress.kubernetes.io/lb-type"])
		}, 5*time.Second, 50*time.Millisecond)
	})

	t.Run("unexport cleans up within 2s", func(t *testing.T) {
		require.NoError(t, c1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Delete(ctx, "httpbin-cluster-1", metav1.DeleteOptions{}))
		start := time.Now()
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}}, 2*time.Second)
		eventuallyImports(t, ctx, c3, map[string][]string{"httpbin": {key1}}, 2*time.Second)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			got, err := ingressPaths(ctx, c1)
			if assert.NoError(c, err) {
				assert.Equal(c, map[string][]string{"fedmesh-httpbin": {"/cluster-1/httpbin-mesh -> httpbin"}}, got)
			}
		}, 2*time.Second, 50*time.Millisecond)
		t.Logf("unexported everywhere %v after deleting the export", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a namespace deleted in a member goes, and comes back only for an import", func(t *testing.T) {
		// cluster-1 exports web in namespace old, then withdraws it: the
		// namespace the syncer made for the import in cluster-2 stays,
		// needed by nothing.
		_, err := c1.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "old"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c1.Kube().CoreV1().Services("old").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		exports := c1.Fedmesh().FlomeshV1alpha1().ServiceExports("old")
		_, err = exports.Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "old"},
			Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/cluster-1/web"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := c2.Fedmesh().FlomeshV1alpha1().ServiceImports("old").Get(ctx, "web", metav1.GetOptions{})
			assert.NoError(c, err, "cluster-2 imports old/web")
		}, 5*time.Second, 50*time.Millisecond)
		require.NoError(t, exports.Delete(ctx, "web", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := c2.Fedmesh().FlomeshV1alpha1().ServiceImports("old").Get(ctx, "web", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "the import of old/web leaves cluster-2: %v", err)
		}, 5*time.Second, 50*time.Millisecond)
		_, err = c2.Kube().CoreV1().Namespaces().Get(ctx, "old", metav1.GetOptions{})
		require.NoError(t, err, "the syncer deletes no namespace")

		// Failed reconciles in cluster-2, of every syncer: a write into a
		// namespace being deleted would be one.
		failures := func() float64 {
			t.Helper()
			sum := 0.0
			for _, s := range f.Syncers() {
				v, err := s.Metric(ctx, "fedmesh_syncer_reconciles_total", map[string]string{"cluster": "cluster-2", "result": "error"})
				require.NoError(t, err)
				sum += v
			}
			return sum
		}
		failed := failures()
		namespaces := c2.Kube().CoreV1().Namespaces()
		before, err := namespaces.Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, namespaces.Delete(ctx, "httpbin", metav1.DeleteOptions{}))
		require.NoError(t, namespaces.Delete(ctx, "old", metav1.DeleteOptions{}))

		// httpbin holds imports that cluster-2 still needs: the namespace
		// controller empties and removes it, and the syncer makes it again
		// with the imports.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			ns, err := namespaces.Get(ctx, "httpbin", metav1.GetOptions{})
			if assert.NoError(c, err) {
				assert.NotEqual(c, before.UID, ns.UID, "a new namespace httpbin")
				assert.Nil(c, ns.DeletionTimestamp)
				assert.Equal(c, "fedmesh-syncer", ns.Labels["app.kubernetes.io/managed-by"])
			}
		}, 20*time.Second, 50*time.Millisecond)
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}}, 10*time.Second)
		t.Logf("cluster-2's namespace httpbin deleted and made again with its imports in %v", time.Since(start).Round(time.Millisecond))
		assert.Equal(t, failed, failures(), "the syncer waits for the namespace to go rather than fail writing into it")

		// old holds nothing the federation wants: it goes for good.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := namespaces.Get(ctx, "old", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "namespace old is gone: %v", err)
		}, 20*time.Second, 50*time.Millisecond)
		assert.Never(t, func() bool {
			_, err := namespaces.Get(ctx, "old", metav1.GetOptions{})
			return !apierrors.IsNotFound(err)
		}, 2*time.Second, 100*time.Millisecond, "nothing makes namespace old again")
	})

	t.Run("a path taken by another Ingress invalidates the export", func(t *testing.T) {
		other := &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "default"},
			Spec: networkingv1.IngressSpec{
				IngressClassName: ptr.To("pipy"),
				Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/cluster-3/httpbin-mesh-cluster-3", PathType: ptr.To(networkingv1.PathTypePrefix),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "other", Port: networkingv1.ServiceBackendPort{Number: 80}}},
					}},
				}}}},
			},
		}
		_, err := c3.Kube().NetworkingV1().Ingresses("default").Create(ctx, other, metav1.CreateOptions{})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			e, err := c3.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin-cluster-3", metav1.GetOptions{})
			if !assert.NoError(c, err) {
				return
			}
			valid := meta.FindStatusCondition(e.Status.Conditions, "Valid")
			if assert.NotNil(c, valid) {
				assert.Equal(c, metav1.ConditionFalse, valid.Status)
				assert.Equal(c, "IngressConflict", valid.Reason)
				assert.Contains(c, valid.Message, "Ingress default/mine")
			}
			_, err = c3.Kube().NetworkingV1().Ingresses("httpbin").Get(ctx, "fedmesh-httpbin-cluster-3", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "the export's Ingress is withdrawn: %v", err)
		}, 5*time.Second, 50*time.Millisecond)
		// Nothing serves cluster-3's path: the control plane withdraws its
		// endpoint, with the syncer's reason, and the importers lose it.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin-cluster-3", metav1.GetOptions{})
			if assert.NoError(c, err) && assert.Len(c, si.Status.Exports, 1) {
				valid := meta.FindStatusCondition(si.Status.Exports[0].Conditions, "Valid")
				if assert.NotNil(c, valid) {
					assert.Equal(c, "IngressConflict", valid.Reason)
				}
				assert.Empty(c, si.Spec.Ports)
			}
		}, 5*time.Second, 50*time.Millisecond)
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}}, 5*time.Second)
		// The user's Ingress is never touched, and the conflict is reported.
		got, err := c3.Kube().NetworkingV1().Ingresses("default").Get(ctx, "mine", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Empty(t, got.Labels)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			// The member's own controllers report on the Service of the
			// same name (ClusterIPNotAllocated, say): only the export's
			// events count.
			events, err := c3.Kube().CoreV1().Events("httpbin").List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=ServiceExport,involvedObject.name=httpbin-cluster-3"})
			if assert.NoError(c, err) && assert.NotEmpty(c, events.Items) {
				assert.Equal(c, "IngressConflict", events.Items[0].Reason)
			}
		}, 5*time.Second, 100*time.Millisecond)

		require.NoError(t, c3.Kube().NetworkingV1().Ingresses("default").Delete(ctx, "mine", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			e, err := c3.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin-cluster-3", metav1.GetOptions{})
			if assert.NoError(c, err) {
				assert.True(c, meta.IsStatusConditionTrue(e.Status.Conditions, "Valid"), "%+v", e.Status.Conditions)
			}
			_, err = c3.Kube().NetworkingV1().Ingresses("httpbin").Get(ctx, "fedmesh-httpbin-cluster-3", metav1.GetOptions{})
			assert.NoError(c, err)
		}, 5*time.Second, 50*time.Millisecond)
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}}, 5*time.Second)
	})

	t.Run("of two exports of one member claiming a path, the older holds it", func(t *testing.T) {
		web := func(namespace string) {
			t.Helper()
			_, err := c3.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
			require.NoError(t, err)
			_, err = c3.Kube().CoreV1().Services(namespace).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}}},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
			_, err = c3.Fedmesh().FlomeshV1alpha1().ServiceExports(namespace).Create(ctx, &v1alpha1.ServiceExport{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/shared"}}},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		valid := func(c *assert.CollectT, namespace string) *metav1.Condition {
			e, err := c3.Fedmesh().FlomeshV1alpha1().ServiceExports(namespace).Get(ctx, "web", metav1.GetOptions{})
			if !assert.NoError(c, err) {
				return nil
			}
			return meta.FindStatusCondition(e.Status.Conditions, "Valid")
		}
		web("team-a")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			if v := valid(c, "team-a"); assert.NotNil(c, v) {
				assert.Equal(c, metav1.ConditionTrue, v.Status)
			}
		}, 5*time.Second, 50*time.Millisecond)
		web("team-b")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			if v := valid(c, "team-b"); assert.NotNil(c, v) {
				assert.Equal(c, metav1.ConditionFalse, v.Status)
				assert.Equal(c, "IngressConflict", v.Reason)
				assert.Equal(c, "path /shared is held by the older ServiceExport team-a/web", v.Message)
			}
			if v := valid(c, "team-a"); assert.NotNil(c, v) {
				assert.Equal(c, metav1.ConditionTrue, v.Status, "the older export keeps its path")
			}
			_, err := c3.Kube().NetworkingV1().Ingresses("team-a").Get(ctx, "fedmesh-web", metav1.GetOptions{})
			assert.NoError(c, err, "the older export is exposed")
			ings, err := c3.Kube().NetworkingV1().Ingresses("team-b").List(ctx, metav1.ListOptions{})
			if assert.NoError(c, err) {
				assert.Empty(c, ings.Items, "the younger export is not exposed")
			}
		}, 5*time.Second, 50*time.Millisecond)
		// The path passes to the younger export once the older goes.
		require.NoError(t, c3.Fedmesh().FlomeshV1alpha1().ServiceExports("team-a").Delete(ctx, "web", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			if v := valid(c, "team-b"); assert.NotNil(c, v) {
				assert.Equal(c, metav1.ConditionTrue, v.Status, "%s: %s", v.Reason, v.Message)
			}
			_, err := c3.Kube().NetworkingV1().Ingresses("team-b").Get(ctx, "fedmesh-web", metav1.GetOptions{})
			assert.NoError(c, err)
		}, 5*time.Second, 50*time.Millisecond)
		require.NoError(t, c3.Fedmesh().FlomeshV1alpha1().ServiceExports("team-b").Delete(ctx, "web", metav1.DeleteOptions{}))
	})

	t.Run("an export in kube-system is invalid and reaches no member", func(t *testing.T) {
		_, err := c1.Kube().CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "sneaky"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c1.Fedmesh().FlomeshV1alpha1().ServiceExports("kube-system").Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: "sneaky"},
			Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/sneaky"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			e, err := c1.Fedmesh().FlomeshV1alpha1().ServiceExports("kube-system").Get(ctx, "sneaky", metav1.GetOptions{})
			if !assert.NoError(c, err) {
				return
			}
			if v := meta.FindStatusCondition(e.Status.Conditions, "Valid"); assert.NotNil(c, v) {
				assert.Equal(c, metav1.ConditionFalse, v.Status)
				assert.Equal(c, "NamespaceNotFederated", v.Reason)
			}
		}, 5*time.Second, 50*time.Millisecond)
		for _, m := range []*framework.Cluster{c1, c2, c3} {
			imps, err := m.Fedmesh().FlomeshV1alpha1().ServiceImports("kube-system").List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, imps.Items, "no import in %s's kube-system", m.Name)
			ings, err := m.Kube().NetworkingV1().Ingresses("kube-system").List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, ings.Items, "no Ingress in %s's kube-system", m.Name)
		}
		require.NoError(t, c1.Fedmesh().FlomeshV1alpha1().ServiceExports("kube-system").Delete(ctx, "sneaky", metav1.DeleteOptions{}))
	})

	t.Run("a member registered later receives every import", func(t *testing.T) {
		start := time.Now()
		register(t, ctx, f, "cluster-4", 84)
		eventuallyImports(t, ctx, c4, map[string][]string{
			"httpbin":           {key1, key3},
			"httpbin-cluster-3": {key3},
		}, 10*time.Second)
		t.Logf("cluster-4 holds every import %v after its registration", time.Since(start).Round(time.Millisecond))
	})

	t.Run("restarting the syncers on a synced federation writes nothing", func(t *testing.T) {
		syncedAndIdle(t, ctx, f, "cluster-1", "cluster-2", "cluster-3", "cluster-4")
		for _, s := range f.Syncers() {
			s.Stop()
		}
		start := time.Now()
		for _, s := range f.Syncers() {
			require.NoError(t, s.Start(ctx))
		}
		leader, writes := syncedAndIdle(t, ctx, f, "cluster-1", "cluster-2", "cluster-3", "cluster-4")
		t.Logf("%s leads and synced 4 members %v after the restart", leader.Name, time.Since(start).Round(time.Millisecond))
		assert.Zero(t, writes, "writes of the leader after a restart; see %s", leader.Log())
		for _, s := range f.Syncers() {
			w, err := s.Writes(ctx)
			require.NoError(t, err)
			assert.Zero(t, w, "writes of %s", s.Name)
		}
	})

	t.Run("killing the leader hands over within the lease and loses nothing", func(t *testing.T) {
		old, err := f.SyncerLeader(ctx)
		require.NoError(t, err)
		require.NotNil(t, old)
		old.Kill()
		killed := time.Now()
		// A change while nobody leads.
		k.run(t, cp, seed(t, "gtp-activeactive.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			l, err := f.SyncerLeader(ctx)
			if assert.NoError(c, err) && assert.NotNil(c, l) {
				assert.NotEqual(c, old.Name, l.Name)
			}
		}, 10*time.Second, 100*time.Millisecond)
		t.Logf("the lease (3s) changed hands %v after the kill", time.Since(killed).Round(time.Millisecond))
		for _, m := range []*framework.Cluster{c1, c2, c3, c4} {
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				got, err := policyNames(ctx, m)
				if assert.NoError(c, err) {
					assert.Equal(c, []string{"httpbin=ActiveActive"}, got, m.Name)
				}
			}, 10*time.Second, 50*time.Millisecond)
		}
		t.Logf("the policy applied while nobody led is in every member %v after the kill", time.Since(killed).Round(time.Millisecond))
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}}, time.Second)
		require.NoError(t, old.Start(ctx))
	})

	t.Run("an unreachable member catches up and slows nobody", func(t *testing.T) {
		c2.Stop()
		stopped := time.Now()
		// A new export, to cluster-1 and cluster-2 only.
		_, err := c3.Kube().CoreV1().Services("httpbin").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c3.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "httpbin"},
			Spec: v1alpha1.ServiceExportSpec{
				Rules:          []v1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/cluster-3/web"}},
				TargetClusters: []string{key1, key2},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		eventuallyImports(t, ctx, c1, map[string][]string{"httpbin": {key3}, "httpbin-cluster-3": {key3}, "web": {key3}}, 3*time.Second)
		t.Logf("cluster-1 imports web %v after cluster-2 died", time.Since(stopped).Round(time.Millisecond))
		// targetClusters: cluster-4 is not a target.
		eventuallyImports(t, ctx, c4, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}}, time.Second)

		time.Sleep(3 * time.Second)
		require.NoError(t, c2.Start(ctx))
		started := time.Now()
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key1, key3}, "httpbin-cluster-3": {key3}, "web": {key3}}, 15*time.Second)
		t.Logf("cluster-2 caught up %v after it came back", time.Since(started).Round(time.Millisecond))
	})

	t.Run("a member deleted from the federation is cleaned", func(t *testing.T) {
		// Admission keeps a Cluster that a policy targets.
		k.run(t, cp, "", "delete", "gtp", "httpbin", "-n", "httpbin")
		require.NoError(t, f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Delete(ctx, "cluster-1", metav1.DeleteOptions{}))
		start := time.Now()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			fl := c1.Fedmesh().FlomeshV1alpha1()
			imps, err := fl.ServiceImports("").List(ctx, managedBy)
			if assert.NoError(c, err) {
				assert.Empty(c, imps.Items)
			}
			gtps, err := fl.GlobalTrafficPolicies("").List(ctx, managedBy)
			if assert.NoError(c, err) {
				assert.Empty(c, gtps.Items)
			}
			ings, err := c1.Kube().NetworkingV1().Ingresses("").List(ctx, managedBy)
			if assert.NoError(c, err) {
				assert.Empty(c, ings.Items)
			}
			e, err := fl.ServiceExports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
			if assert.NoError(c, err) {
				assert.Empty(c, e.Status.Conditions)
			}
		}, 5*time.Second, 100*time.Millisecond)
		t.Logf("cluster-1 cleaned %v after its Cluster was deleted", time.Since(start).Round(time.Millisecond))
		// Its endpoints leave the others' imports.
		eventuallyImports(t, ctx, c2, map[string][]string{"httpbin": {key3}, "httpbin-cluster-3": {key3}, "web": {key3}}, 3*time.Second)
		eventuallyImports(t, ctx, c3, map[string][]string{}, 3*time.Second)
		// The user's objects stay.
		_, err := c1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		assert.NoError(t, err)
	})
}
