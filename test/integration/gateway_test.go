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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/gateway"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/loopback"
	"github.com/fedmesh/fedmesh/test/framework/netns"
)

// TestGatewayIdentity: join makes fedmesh-gateway's identity in the
// member, gateway-kubeconfig issues its tokens, the identity may read
// what the gateway routes from and nothing else, and unjoin removes it.
func TestGatewayIdentity(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}, WithoutMemberCRDs: true})
	p := newPlugin(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p.run(t, "join", "cluster-1", "--member-context", "cluster-1", "--gateway-host", "127.0.0.1", "--gateway-port", "81")
	path := filepath.Join(t.TempDir(), "gateway.kubeconfig")
	p.run(t, "gateway-kubeconfig", "--member-context", "cluster-1", "--output-file", path)

	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	require.NoError(t, err)
	kube, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	fed, err := versioned.NewForConfig(cfg)
	require.NoError(t, err)

	// What the gateway does: list every kind it watches, everywhere.
	_, err = fed.FlomeshV1alpha1().ServiceImports("").List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list serviceimports")
	_, err = fed.FlomeshV1alpha1().GlobalTrafficPolicies("").List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list globaltrafficpolicies")
	_, err = kube.NetworkingV1().Ingresses("").List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list ingresses")
	_, err = kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list services")
	_, err = kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list endpointslices")

	// Nothing else: no Secret, no write.
	_, err = kube.CoreV1().Secrets(memberrbac.IdentityNamespace).List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "list secrets: %v", err)
	_, err = kube.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	assert.True(t, apierrors.IsForbidden(err), "create configmap: %v", err)
	_, err = kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	assert.True(t, apierrors.IsForbidden(err), "create service: %v", err)
	err = fed.FlomeshV1alpha1().ServiceImports("default").Delete(ctx, "x", metav1.DeleteOptions{})
	assert.True(t, apierrors.IsForbidden(err), "delete serviceimport: %v", err)

	// Every rule it holds, as the member reports them, is a read of one
	// of the gateway's resources (beyond what every authenticated user
	// may do: review its own access, discovery).
	review, err := kube.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "default"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	allowed := map[string]bool{}
	for _, c := range memberrbac.Checks(memberrbac.GatewayRules) {
		allowed[c.Group+"/"+c.Resource+"/"+c.Verb] = true
	}
	for _, r := range review.Status.ResourceRules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "authorization.k8s.io" || g == "authentication.k8s.io" || (g == "certificates.k8s.io" && res == "clustertrustbundles") {
						continue // granted to every authenticated user: self reviews, public trust bundles
					}
					assert.True(t, allowed[g+"/"+res+"/"+v], "the gateway may %s %s.%s", v, res, g)
				}
			}
		}
	}
	_, missing := memberrbac.Missing(review.Status.ResourceRules, memberrbac.Checks(memberrbac.GatewayRules))
	assert.False(t, missing, "the gateway holds every rule of GatewayRules")

	out := p.run(t, "unjoin", "cluster-1", "--member-context", "cluster-1")
	assert.Contains(t, out, "ClusterRoleBinding fedmesh:gateway, ClusterRole fedmesh:gateway")
	assert.Contains(t, out, "ServiceAccount fedmesh-system/fedmesh-gateway")
	_, err = kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err), "after unjoin the token is revoked: %v", err)
}

// TestGatewayRoutes: fedmesh-gateway on real members, as their
// fedmesh-gateway ServiceAccount. cluster-1 exports httpbin, served by a
// backend in a network namespace, with a pathRewrite; a client of
// cluster-2 asks its egress. Under Locality it gets a 503 that says why;
// under FailOver it is served by cluster-1 through cluster-1's ingress,
// with the rewrite; and it still is once the control plane is gone.
func TestGatewayRoutes(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("the backends run in network namespaces: %v", err)
	}
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1", "cluster-2"}, WithSyncer: true})
	p := newPlugin(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	key := func(m string) string { return "default/default/default/" + m }
	ports := map[string]loopback.GatewayPorts{}
	for _, m := range []string{"cluster-1", "cluster-2"} {
		ports[m] = loopback.GatewayPorts{Ingress: freeLoopbackPort(t)}
		p.run(t, "join", m, "--member-context", m, "--gateway-host", "127.0.0.1", "--gateway-port", strconv.Itoa(ports[m].Ingress), "--wait", "--timeout", "90s")
	}
	gw := map[string]*loopback.Gateway{}
	for _, m := range []string{"cluster-1", "cluster-2"} {
		g, err := f.StartGateway(ctx, f.Member(m), key(m), ports[m])
		require.NoError(t, err, "starting the gateway of %s", m)
		gw[m] = g
	}

	// httpbin in cluster-1: a backend that says where it is and which
	// path it was asked.
	be, err := netns.StartBackend(ctx, netns.BackendOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hi, I am from cluster-1! path=%s\n", r.URL.Path)
	})})
	require.NoError(t, err)
	defer be.Close()
	m1 := f.Member("cluster-1")
	require.NoError(t, netns.Publish(ctx, m1.Kube(), "httpbin", "httpbin", 8080, be.Addr()))
	_, err = m1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Create(ctx, &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: "*",
			Rules:              []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/cluster-1/httpbin-mesh", PathType: "Prefix"}},
			PathRewrite:        &v1alpha1.PathRewrite{From: "/cluster-1/httpbin-mesh", To: "/"},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	egress := proxyClient(t, gw["cluster-2"].EgressAddr())
	get := func(c *assert.CollectT) (int, string, string) {
		resp, err := egress.Get("http://httpbin.httpbin:8080/get")
		if !assert.NoError(c, err) {
			return 0, "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(gateway.ServedByHeader), string(b)
	}

	// Locality: cluster-2 has no httpbin, so no route, and the 503 says
	// why, cluster by cluster.
	if !assert.EventuallyWithT(t, func(c *assert.CollectT) {
		code, by, body := get(c)
		assert.Equal(c, http.StatusServiceUnavailable, code)
		assert.Empty(c, by)
		assert.Contains(c, body, "policy: Locality")
		assert.Contains(c, body, key("cluster-2")+": out, NoLocalEndpoints")
		assert.Contains(c, body, key("cluster-1")+": out, NotATarget")
	}, 2*time.Minute, 250*time.Millisecond, "cluster-2's egress explains why it has no route") {
		t.Fatalf("%s", importState(ctx, f))
	}

	// The ingress of cluster-1 serves the export itself, rewritten.
	resp, err := http.Get("http://" + gw["cluster-1"].IngressAddr() + "/cluster-1/httpbin-mesh/anything")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "Hi, I am from cluster-1! path=/anything\n", string(b))
	assert.Equal(t, key("cluster-1"), resp.Header.Get(gateway.ServedByHeader))

	// FailOver to cluster-1.
	cp := f.ControlPlane
	_, err = cp.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cp.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Create(ctx, &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: key("cluster-1")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	if !assert.EventuallyWithT(t, func(c *assert.CollectT) {
		code, by, body := get(c)
		assert.Equal(c, http.StatusOK, code, body)
		assert.Equal(c, key("cluster-1"), by)
		assert.Equal(c, "Hi, I am from cluster-1! path=/get\n", body, "the export's path, then the rewrite")
	}, 2*time.Minute, 250*time.Millisecond, "FailOver: cluster-1 serves cluster-2's client") {
		t.Fatalf("%s", importState(ctx, f))
	}

	// The control plane goes; the members keep what the syncer wrote,
	// and the gateways route from it.
	cp.KillAPIServer()
	for range 10 {
		code, by, body := get(&assert.CollectT{})
		assert.Equal(t, http.StatusOK, code, body)
		assert.Equal(t, key("cluster-1"), by)
	}

	// The metrics count what was served, by whom.
	resp, err = http.Get("http://" + gw["cluster-2"].MetricsAddr() + "/metrics")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(b), `fedmesh_gateway_requests_total{cluster="`+key("cluster-1")+`",code="200",listener="egress"}`)
	assert.Contains(t, string(b), `fedmesh_gateway_requests_total{cluster="",code="503",listener="egress"}`)

	// SIGTERM drains: the gateway stops, and its port is free.
	gw["cluster-2"].Stop()
	_, err = egress.Get("http://httpbin.httpbin:8080/get")
	var oe *net.OpError
	assert.True(t, errors.As(err, &oe), "after SIGTERM nothing listens: %v", err)
}

// importState says what the control plane and cluster-2 hold of httpbin,
// for a failure's message.
func importState(ctx context.Context, f *framework.Federation) string {
	var out []string
	if imp, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{}); err != nil {
		out = append(out, fmt.Sprintf("control plane import: %v", err))
	} else {
		out = append(out, fmt.Sprintf("control plane import: %+v %+v", imp.Spec.Ports, imp.Status.Exports))
	}
	if imp, err := f.Member("cluster-2").Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{}); err != nil {
		out = append(out, fmt.Sprintf("cluster-2 import: %v", err))
	} else {
		out = append(out, fmt.Sprintf("cluster-2 import: %+v", imp.Spec.Ports))
	}
	if e, err := f.Member("cluster-1").Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{}); err == nil {
		out = append(out, fmt.Sprintf("cluster-1 export conditions: %+v", e.Status.Conditions))
	}
	return strings.Join(out, "; ")
}

// freeLoopbackPort is a port for a gateway's ingress, which its Cluster
// names at join, before the gateway starts: one from below the ephemeral
// range, which no outgoing connection takes in between.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	p, err := loopback.FreePort()
	require.NoError(t, err)
	return p
}

// proxyClient is an HTTP client whose proxy is a gateway's egress.
func proxyClient(t *testing.T, egress string) *http.Client {
	u, err := url.Parse("http://" + egress)
	require.NoError(t, err)
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
