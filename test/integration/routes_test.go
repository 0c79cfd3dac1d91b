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
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

// tiersOf returns, per consumer key, the clusters of each tier of its route
// to port 8080, as a policy's status.consumers reports them.
func tiersOf(p *v1alpha1.GlobalTrafficPolicy) map[string][][]string {
	out := map[string][][]string{}
	for _, r := range p.Status.Consumers {
		if r.Port != 8080 {
			continue
		}
		tiers := [][]string{}
		for _, t := range r.Tiers {
			var keys []string
			for _, d := range t.Destinations {
				keys = append(keys, d.Cluster)
			}
			tiers = append(tiers, keys)
		}
		out[r.Cluster] = tiers
	}
	return out
}

// TestRouteExplanation follows the Flomesh walkthrough on real clusters and
// checks, at each step, what fedmesh explains of every member's route: the
// policy's status.consumers and Routed condition, written by
// fedmesh-apiserver, and kubectl fedmesh status service --from, with and
// without access to the consumer member. Both are computed by pkg/routing,
// as fedmesh-gateway's routes are.
func TestRouteExplanation(t *testing.T) {
	f := framework.Start(t, framework.Options{
		Members:     []string{"cluster-1", "cluster-2", "cluster-3"},
		FedmeshArgs: []string{"--member-unavailable-grace=3s"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		register(t, ctx, f, name, int32(81+i))
	}
	deployHTTPBin(t, ctx, f.Member("cluster-1"))
	deployHTTPBin(t, ctx, f.Member("cluster-3"))
	const (
		c1 = "default/default/default/cluster-1"
		c2 = "default/default/default/cluster-2"
		c3 = "default/default/default/cluster-3"
	)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, []string{c1, c3}, endpointKeys(ctx, f, "httpbin"))
	}, 30*time.Second, 100*time.Millisecond)
	p := newPlugin(t, f)
	policies := f.ControlPlane.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin")

	// waitRoutes waits until the policy's status reports those tiers and
	// that Routed condition, and returns the policy.
	waitRoutes := func(t *testing.T, routed metav1.ConditionStatus, want map[string][][]string) *v1alpha1.GlobalTrafficPolicy {
		t.Helper()
		var last *v1alpha1.GlobalTrafficPolicy
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			gtp, err := policies.Get(ctx, "httpbin", metav1.GetOptions{})
			if !assert.NoError(c, err) {
				return
			}
			last = gtp
			cond := meta.FindStatusCondition(gtp.Status.Conditions, "Routed")
			if assert.NotNil(c, cond, "a Routed condition") {
				assert.Equal(c, routed, cond.Status, "%s: %s", cond.Reason, cond.Message)
				assert.Equal(c, gtp.Generation, cond.ObservedGeneration)
			}
			assert.Equal(c, want, tiersOf(gtp))
		}, 30*time.Second, 100*time.Millisecond)
		return last
	}

	t.Run("no policy: cluster-2 has no route, and is told why", func(t *testing.T) {
		out := p.run(t, "status", "service", "httpbin/httpbin", "--from", "cluster-2")
		assert.Contains(t, out, "Port 8080, policy Locality:\n  no route: no cluster can serve this consumer; a request is answered 503")
		assert.Regexp(t, c2+` +out +NoLocalEndpoints +`+c2+` has no ready endpoint`, out)
		assert.Regexp(t, c1+` +out +NotATarget +`+c1+` exports the service, but the Locality policy routes to local endpoints only`, out)
		assert.Contains(t, out, "no access to the member was given (--member-kubeconfig, --member-context); "+c2+" does not export the service")

		out = p.run(t, "status", "service", "httpbin/httpbin", "--from", c1)
		assert.Regexp(t, `\n  0 +`+c1+` \(local\) +100 +127.0.0.1:81/cluster-1/httpbin-mesh\n`, out, "cluster-1's export stands for its endpoints")
	})

	t.Run("FailOver to cluster-1 and cluster-3: the policy's status tells every member's route", func(t *testing.T) {
		_, err := f.ControlPlane.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = policies.Create(ctx, &v1alpha1.GlobalTrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "httpbin"},
			Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType,
				Targets: []v1alpha1.TrafficTarget{{ClusterKey: c1}, {ClusterKey: c3}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		gtp := waitRoutes(t, metav1.ConditionTrue, map[string][][]string{c1: {{c1}, {c3}}, c2: {{c1, c3}}, c3: {{c3}, {c1}}})
		for _, r := range gtp.Status.Consumers {
			if r.Cluster == c2 {
				assert.Equal(t, "out: "+c2+": NoLocalEndpoints", r.Message)
			}
		}

		// Heartbeats go on; the status is not written again.
		time.Sleep(3 * time.Second)
		again, err := policies.Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, gtp.ResourceVersion, again.ResourceVersion, "no write without a change")

		k := kubectls(t)[0]
		out := k.run(t, f.ControlPlane.KubeconfigPath, "", "get", "gtp", "-n", "httpbin")
		assert.Regexp(t, `(?m)^NAME +LB TYPE +TARGETS +RESOLVED +ROUTED +AGE$`, out)
		assert.Regexp(t, `(?m)^httpbin +FailOver +\S+ +True +True +`, out)

		out = p.run(t, "status", "service", "httpbin/httpbin")
		assert.Contains(t, out, "Routes:      True (EveryConsumerRouted: every member has a route to every port of the service)")
		assert.Regexp(t, `\n`+c2+` +8080 +`+c1+`=100 `+c3+`=100 +`+c2+`: NoLocalEndpoints\n`, out)

		out = p.run(t, "status", "service", "httpbin/httpbin", "--from", "cluster-2", "-o", "json")
		var view struct {
			Consumer       string `json:"consumer"`
			LocalEndpoints string `json:"localEndpoints"`
			Routes         []struct {
				Port   int32  `json:"port"`
				LbType string `json:"lbType"`
				Tiers  [][]struct {
					Cluster  string `json:"cluster"`
					Weight   int32  `json:"weight"`
					Backends []struct {
						Host string `json:"host"`
						Port int32  `json:"port"`
						Path string `json:"path"`
					} `json:"backends"`
				} `json:"tiers"`
			} `json:"routes"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &view))
		assert.Equal(t, c2, view.Consumer)
		assert.Equal(t, "OwnExport", view.LocalEndpoints)
		require.Len(t, view.Routes, 1)
		assert.Equal(t, "FailOver", view.Routes[0].LbType)
		require.Len(t, view.Routes[0].Tiers, 1)
		require.Len(t, view.Routes[0].Tiers[0], 2)
		d := view.Routes[0].Tiers[0][1]
		assert.Equal(t, c3, d.Cluster)
		require.Len(t, d.Backends, 1)
		assert.Equal(t, "127.0.0.1", d.Backends[0].Host)
		assert.EqualValues(t, 83, d.Backends[0].Port)
		assert.Equal(t, "/cluster-3/httpbin-mesh", d.Backends[0].Path)
	})

	m2 := f.Member("cluster-2")
	t.Run("httpbin in cluster-2: read from the member, its ready endpoint comes first", func(t *testing.T) {
		// No kubelet runs Pods here: a Service without a selector and an
		// EndpointSlice stand for httpbin's Pods. Nothing connects to the
		// address; it is data only.
		_, err := m2.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = m2.Kube().CoreV1().Services("httpbin").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "httpbin"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pipy", Port: 8080, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = m2.Kube().DiscoveryV1().EndpointSlices("httpbin").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "httpbin-1", Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pipy"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.96.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.96.0.8"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		out := p.run(t, "status", "service", "httpbin/httpbin", "--from", "cluster-2", "--member-context", "cluster-2")
		assert.Contains(t, out, "Local endpoints:   read from the member at "+m2.Server()+" (context cluster-2): its Service and EndpointSlices")
		assert.Regexp(t, `\n  0 +`+c2+` \(local\) +100 +10.96.0.7:8080\n`, out, "the ready endpoint only")
		assert.Regexp(t, `\n  1 +`+c1+` +100 +127.0.0.1:81/cluster-1/httpbin-mesh\n`, out)
		assert.Regexp(t, `\n  1 +`+c3+` +100 +127.0.0.1:83/cluster-3/httpbin-mesh\n`, out)
		assert.Regexp(t, c2+` +tier 0 +Local +`+c2+` serves from 1 ready local endpoint`, out)

		// The control plane sees no Pods: until cluster-2 exports httpbin,
		// the policy's status cannot know of them, and says so.
		gtp, err := policies.Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, [][]string{{c1, c3}}, tiersOf(gtp)[c2])

		msg := p.fail(t, "status", "service", "httpbin/httpbin", "--from", "cluster-2", "--member-context", "cluster-1")
		assert.Contains(t, msg, "is not Cluster cluster-2")
	})

	t.Run("cluster-2 exports httpbin: the policy's status sees it serve itself", func(t *testing.T) {
		_, err := m2.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: "httpbin"},
			Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/cluster-2/httpbin-mesh"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		waitRoutes(t, metav1.ConditionTrue, map[string][][]string{c1: {{c1}, {c3}}, c2: {{c2}, {c1, c3}}, c3: {{c3}, {c1}}})
	})

	t.Run("a target that is not Ready leaves every route when its grace runs out", func(t *testing.T) {
		f.Member("cluster-3").Stop()
		waitReady(t, ctx, f, "cluster-3", metav1.ConditionFalse, 15*time.Second)
		// After the grace, the control plane withdraws cluster-3's export,
		// and with it the only sign it has of cluster-3's own instance.
		gtp := waitRoutes(t, metav1.ConditionTrue, map[string][][]string{c1: {{c1}}, c2: {{c2}, {c1}}, c3: {{c1}}})
		for _, r := range gtp.Status.Consumers {
			if r.Cluster == c2 {
				assert.Equal(t, "out: "+c3+": NotReady", r.Message)
			}
		}
		out := p.run(t, "status", "service", "httpbin/httpbin", "--from", "cluster-1")
		assert.Regexp(t, c3+` +out +NotReady +`+c3+` is not Ready \(`, out)
	})

	t.Run("ActiveActive: one tier by weight, a weight of zero drains", func(t *testing.T) {
		gtp, err := policies.Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		gtp.Spec = v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.ActiveActiveLbType,
			Targets: []v1alpha1.TrafficTarget{{ClusterKey: c1, Weight: ptr.To[int32](0)}, {ClusterKey: c2, Weight: ptr.To[int32](30)}, {ClusterKey: c3}}}
		_, err = policies.Update(ctx, gtp, metav1.UpdateOptions{})
		require.NoError(t, err)
		gtp = waitRoutes(t, metav1.ConditionTrue, map[string][][]string{c1: {{c2}}, c2: {{c2}}, c3: {{c2}}})
		for _, r := range gtp.Status.Consumers {
			if r.Cluster == c2 {
				assert.Equal(t, []v1alpha1.RouteTier{{Destinations: []v1alpha1.RouteDestination{{Cluster: c2, Weight: 30}}}}, r.Tiers)
				assert.Equal(t, "out: "+c1+": ZeroWeight; "+c3+": NotReady", r.Message)
			}
		}
	})
}
