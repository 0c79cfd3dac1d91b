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
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/informers/externalversions"
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

	t.Run("status.exports lists each export, healthy ones without conditions", func(t *testing.T) {
		si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		b, _ := json.Marshal(si.Status.Exports)
		require.Len(t, si.Status.Exports, 2, "status.exports: %s", b)
		for _, e := range si.Status.Exports {
			assert.Equal(t, int64(1), e.ObservedGeneration, "%s: %s", e.Cluster, b)
			assert.Empty(t, e.Conditions, "%s: valid and in no conflict: %s", e.Cluster, b)
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

// TestServiceImportsLive watches the imports as a controller and a user
// would, while a member exports, changes and unexports a service.
func TestServiceImportsLive(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1", "cluster-2"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	register(t, ctx, f, "cluster-1", 81)
	register(t, ctx, f, "cluster-2", 82)
	m1, m2 := f.Member("cluster-1"), f.Member("cluster-2")
	for _, m := range []*framework.Cluster{m1, m2} {
		_, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	service := func(m *framework.Cluster, name string, port int32, protocol corev1.Protocol) {
		_, err := m.Kube().CoreV1().Services("live").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
				Ports: []corev1.ServicePort{{Port: port, Protocol: protocol}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	export := func(m *framework.Cluster, name, path string, port int32) *v1alpha1.ServiceExport {
		e, err := m.Fedmesh().FlomeshV1alpha1().ServiceExports("live").Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{PortNumber: port, Path: path}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return e
	}

	// An informer with client-go's default settings, as the syncer runs.
	factory := externalversions.NewSharedInformerFactoryWithOptions(f.ControlPlane.Fedmesh(), 0, externalversions.WithNamespace("live"))
	informer := factory.Flomesh().V1alpha1().ServiceImports().Informer()
	events := make(chan string, 64)
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { events <- "add " + obj.(*v1alpha1.ServiceImport).Name },
		UpdateFunc: func(old, obj interface{}) {
			if old.(*v1alpha1.ServiceImport).ResourceVersion != obj.(*v1alpha1.ServiceImport).ResourceVersion {
				events <- "update " + obj.(*v1alpha1.ServiceImport).Name
			}
		},
		DeleteFunc: func(obj interface{}) {
			if si, ok := obj.(*v1alpha1.ServiceImport); ok {
				events <- "delete " + si.Name
			}
		},
	})
	require.NoError(t, err)
	stop := make(chan struct{})
	factory.Start(stop)
	defer factory.Shutdown()
	defer close(stop)
	require.True(t, cache.WaitForCacheSync(ctx.Done(), informer.HasSynced), "the informer syncs")

	// And kubectl, watching.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var watchOut safeBuffer
	kw := exec.CommandContext(watchCtx, kubectls(t)[0].path, "--kubeconfig", f.ControlPlane.KubeconfigPath,
		"get", "serviceimports", "-A", "-w", "--output-watch-events")
	kw.Stdout, kw.Stderr = &watchOut, &watchOut
	kw.Env = append(os.Environ(), "HOME="+t.TempDir())
	require.NoError(t, kw.Start())
	defer func() { stopWatch(); _ = kw.Wait() }()

	within := func(want string) {
		t.Helper()
		start := time.Now()
		for {
			select {
			case got := <-events:
				if got == want {
					t.Logf("%q after %v", want, time.Since(start).Round(time.Millisecond))
					return
				}
			case <-time.After(time.Second - time.Since(start)):
				t.Fatalf("no %q within 1s", want)
			}
		}
	}

	// kubectl connects in its own time: a first export, seen by both
	// watchers, shows they are watching before the timed changes start.
	service(m1, "sentinel", 9, corev1.ProtocolTCP)
	export(m1, "sentinel", "/sentinel", 9)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Regexp(c, `(?m)^ADDED +live +sentinel `, watchOut.String())
	}, 10*time.Second, 50*time.Millisecond, "kubectl get -w prints the first export")
	within("add sentinel")

	service(m1, "echo", 7, corev1.ProtocolTCP)
	e := export(m1, "echo", "/echo", 7)
	within("add echo")

	e.Spec.Rules[0].Path = "/echo-v2"
	_, err = m1.Fedmesh().FlomeshV1alpha1().ServiceExports("live").Update(ctx, e, metav1.UpdateOptions{})
	require.NoError(t, err)
	within("update echo")

	require.NoError(t, m1.Fedmesh().FlomeshV1alpha1().ServiceExports("live").Delete(ctx, "echo", metav1.DeleteOptions{}))
	within("delete echo")

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out := watchOut.String()
		assert.Regexp(c, `(?m)^ADDED +live +echo `, out)
		assert.Regexp(c, `(?m)^MODIFIED +live +echo `, out)
		assert.Regexp(c, `(?m)^DELETED +live +echo `, out)
	}, 5*time.Second, 100*time.Millisecond, "kubectl get -w prints the changes")

	t.Run("a watch from a version this server did not issue is 410 Gone", func(t *testing.T) {
		_, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("live").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
		assert.True(t, apierrors.IsResourceExpired(err) || apierrors.IsGone(err), "want 410, got %v", err)
	})

	t.Run("a conflict follows KEP-1645 and clears", func(t *testing.T) {
		// cluster-1 exports first, so its TCP port wins over cluster-2's UDP.
		service(m1, "dns", 53, corev1.ProtocolTCP)
		export(m1, "dns", "/dns", 53)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("live").Get(ctx, "dns", metav1.GetOptions{})
			assert.NoError(c, err)
		}, 5*time.Second, 50*time.Millisecond)
		time.Sleep(1100 * time.Millisecond) // creationTimestamps have a one-second resolution
		service(m2, "dns", 53, corev1.ProtocolUDP)
		export(m2, "dns", "/dns", 53)

		var si *v1alpha1.ServiceImport
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var err error
			si, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("live").Get(ctx, "dns", metav1.GetOptions{})
			if assert.NoError(c, err) && assert.Len(c, si.Status.Exports, 2) {
				for _, e := range si.Status.Exports {
					assert.True(c, meta.IsStatusConditionTrue(e.Conditions, "Conflict"), "%s in conflict", e.Cluster)
				}
			}
		}, 5*time.Second, 50*time.Millisecond)
		require.Len(t, si.Spec.Ports, 1)
		assert.Equal(t, v1alpha1.Protocol("TCP"), si.Spec.Ports[0].Protocol, "the oldest export wins")
		assert.Equal(t, "PortConflict", meta.FindStatusCondition(si.Status.Exports[1].Conditions, "Conflict").Reason)

		require.NoError(t, m2.Fedmesh().FlomeshV1alpha1().ServiceExports("live").Delete(ctx, "dns", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("live").Get(ctx, "dns", metav1.GetOptions{})
			if assert.NoError(c, err) && assert.Len(c, si.Status.Exports, 1) {
				assert.Empty(c, si.Status.Exports[0].Conditions, "the mark clears: the export is healthy again")
			}
		}, 5*time.Second, 50*time.Millisecond)
	})

	t.Run("a kubeconfig the member refuses is Unauthorized", func(t *testing.T) {
		_, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: "refused"},
			Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: tokenKubeconfig(t, m2, "not-a-token")},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		cl := waitReady(t, ctx, f, "refused", metav1.ConditionFalse, 10*time.Second)
		assert.Equal(t, "Unauthorized", meta.FindStatusCondition(cl.Status.Conditions, "Ready").Reason)
	})
}

// safeBuffer is a bytes.Buffer a process writes to while the test reads.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tokenKubeconfig(t *testing.T, member *framework.Cluster, token string) string {
	t.Helper()
	b, err := member.Kubeconfig()
	require.NoError(t, err)
	cfg, err := clientcmd.Load(b)
	require.NoError(t, err)
	// The member's server and CA, with a bearer token for credentials.
	user := cfg.Contexts[cfg.CurrentContext].AuthInfo
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	b, err = clientcmd.Write(*cfg)
	require.NoError(t, err)
	return string(b)
}
