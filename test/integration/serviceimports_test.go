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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

// register registers a member on the control plane, as the seed's
// cluster.yaml does, and waits until fedmesh reports it Ready.
func register(t *testing.T, ctx context.Context, f *framework.Federation, name string, port int32) {
	t.Helper()
	kc, err := f.Member(name).Kubeconfig()
	require.NoError(t, err)
	_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", GatewayPort: port, Kubeconfig: string(kc)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitReady(t, ctx, f, name, metav1.ConditionTrue, 30*time.Second)
}

func waitReady(t *testing.T, ctx context.Context, f *framework.Federation, name string, want metav1.ConditionStatus, within time.Duration) *v1alpha1.Cluster {
	t.Helper()
	var last *v1alpha1.Cluster
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cl, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
		if !assert.NoError(c, err) {
			return
		}
		last = cl
		cond := meta.FindStatusCondition(cl.Status.Conditions, "Ready")
		if assert.NotNil(c, cond, "%s has a Ready condition", name) {
			assert.Equal(c, want, cond.Status, "%s Ready: %s: %s", name, cond.Reason, cond.Message)
		}
	}, within, 200*time.Millisecond)
	return last
}

// deployHTTPBin creates in a member what the seed's httpbin.yaml and
// serviceexport-httpbin.yaml create: the two Services (not the Deployment:
// no kubelet runs pods here) and, with a real kubectl, the two exports.
func deployHTTPBin(t *testing.T, ctx context.Context, m *framework.Cluster) {
	t.Helper()
	kube := m.Kube()
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
	require.NoError(t, err)
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
	k := kubectls(t)[0]
	out := k.run(t, m.KubeconfigPath, seed(t, "serviceexport-httpbin.yaml", map[string]string{"CLUSTER_NAME": m.Name}), "apply", "-f", "-")
	assert.Contains(t, out, "serviceexport.flomesh.io/httpbin created")
}

// endpointKeys returns the cluster keys of the endpoints of an import.
func endpointKeys(ctx context.Context, f *framework.Federation, name string) []string {
	si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var keys []string
	for _, p := range si.Spec.Ports {
		for _, e := range p.Endpoints {
			keys = append(keys, e.ClusterKey)
		}
	}
	return keys
}

// TestServiceImports is the seed's walkthrough on the control plane:
// exports in cluster-1 and cluster-3 become ServiceImports there, live, and
// follow the members' health.
func TestServiceImports(t *testing.T) {
	f := framework.Start(t, framework.Options{
		Members:     []string{"cluster-1", "cluster-2", "cluster-3"},
		FedmeshArgs: []string{"--member-unavailable-grace=3s"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		register(t, ctx, f, name, int32(81+i))
	}
	ready := waitReady(t, ctx, f, "cluster-1", metav1.ConditionTrue, time.Second)
	assert.Equal(t, "v1.37.2", ready.Status.KubernetesVersion)
	assert.NotNil(t, ready.Status.LastHeartbeatTime)

	deployHTTPBin(t, ctx, f.Member("cluster-1"))
	deployHTTPBin(t, ctx, f.Member("cluster-3"))

	k := kubectls(t)[0]
	cp := f.ControlPlane.KubeconfigPath
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out, _, err := k.try(t, cp, "", "get", "serviceimports", "-A")
		if assert.NoError(c, err) {
			for _, name := range []string{"httpbin", "httpbin-cluster-1", "httpbin-cluster-3"} {
				assert.Regexp(c, "(?m)^httpbin +"+name+" +ClusterSetIP +8080/TCP ", out)
			}
		}
	}, 10*time.Second, 100*time.Millisecond)

	t.Run("the seed's shape", func(t *testing.T) {
		spec := k.run(t, cp, "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}")
		want := `{"ports":[{"endpoints":[` +
			`{"clusterKey":"default/default/default/cluster-1","target":{"host":"127.0.0.1","ip":"127.0.0.1","path":"/cluster-1/httpbin-mesh","port":81}},` +
			`{"clusterKey":"default/default/default/cluster-3","target":{"host":"127.0.0.1","ip":"127.0.0.1","path":"/cluster-3/httpbin-mesh","port":83}}],` +
			`"name":"pipy","port":8080,"protocol":"TCP"}],"serviceAccountName":"*","type":"ClusterSetIP"}`
		assert.JSONEq(t, want, spec)
	})

	t.Run("writes answer 405", func(t *testing.T) {
		_, errOut, err := k.try(t, cp, "", "delete", "serviceimports", "httpbin", "-n", "httpbin")
		require.Error(t, err)
		assert.Contains(t, errOut, "MethodNotAllowed")
	})

	t.Run("status.exports carries each export's conditions", func(t *testing.T) {
		si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		b, _ := json.Marshal(si.Status.Exports)
		require.Len(t, si.Status.Exports, 2, "status.exports: %s", b)
		for _, e := range si.Status.Exports {
			assert.True(t, meta.IsStatusConditionTrue(e.Conditions, "Valid"), "%s: %s", e.Cluster, b)
			assert.True(t, meta.IsStatusConditionFalse(e.Conditions, "Conflict"), "%s: %s", e.Cluster, b)
		}
	})

	t.Run("a dead member's endpoints leave after the grace and return", func(t *testing.T) {
		m := f.Member("cluster-3")
		m.Stop()
		start := time.Now()
		waitReady(t, ctx, f, "cluster-3", metav1.ConditionFalse, 10*time.Second)
		t.Logf("Ready=False %v after the kill", time.Since(start).Round(time.Millisecond))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, []string{"default/default/default/cluster-1"}, endpointKeys(ctx, f, "httpbin"))
		}, 15*time.Second, 100*time.Millisecond)
		// The other member's own import never lost its endpoint.
		assert.Equal(t, []string{"default/default/default/cluster-1"}, endpointKeys(ctx, f, "httpbin-cluster-1"))
		require.NoError(t, m.Start(ctx))
		waitReady(t, ctx, f, "cluster-3", metav1.ConditionTrue, 15*time.Second)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, []string{"default/default/default/cluster-1", "default/default/default/cluster-3"}, endpointKeys(ctx, f, "httpbin"))
		}, 15*time.Second, 100*time.Millisecond)
	})

	t.Run("deleting a Cluster withdraws its endpoints at once", func(t *testing.T) {
		require.NoError(t, f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Delete(ctx, "cluster-1", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, []string{"default/default/default/cluster-3"}, endpointKeys(ctx, f, "httpbin"))
		}, 2*time.Second, 50*time.Millisecond)
	})
}
