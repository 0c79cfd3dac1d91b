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
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/admission/clusterinuse"
	"github.com/fedmesh/fedmesh/pkg/admission/clusterkeys"
	"github.com/fedmesh/fedmesh/pkg/protection"
	"github.com/fedmesh/fedmesh/test/framework"
)

// clusterManifest is the seed's cluster.yaml for a member, in a region
// ("" for the default one).
func clusterManifest(t *testing.T, f *framework.Federation, name, region string) string {
	t.Helper()
	kc, err := f.Member(name).Kubeconfig()
	require.NoError(t, err)
	manifest := seed(t, "cluster.yaml", map[string]string{
		"CLUSTER_NAME":                        name,
		"HOST_IP":                             "127.0.0.1",
		"PORT":                                "81",
		"KUBECONFIG_OF_THE_MEMBER_INDENTED_4": indent(string(kc), 4),
	})
	if region != "" {
		manifest = strings.Replace(manifest, "\nspec:\n", "\nspec:\n  region: "+region+"\n", 1)
	}
	return manifest
}

func createNamespaces(t *testing.T, ctx context.Context, f *framework.Federation, names ...string) {
	t.Helper()
	for _, ns := range names {
		_, err := f.ControlPlane.Kube().CoreV1().Namespaces().Create(ctx,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
}

// TestAdmission drives ClusterKeyResolution and ClusterInUseProtection
// through the aggregator with a real kubectl and the seed's manifests.
func TestAdmission(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1", "cluster-2", "cluster-3"}})
	cp := f.ControlPlane
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	createNamespaces(t, ctx, f, "httpbin", "race")
	k := kubectls(t)[0]
	kc := cp.KubeconfigPath
	client := cp.Fedmesh().FlomeshV1alpha1()

	out := k.run(t, kc, clusterManifest(t, f, "cluster-1", ""), "apply", "-f", "-")
	require.Contains(t, out, "cluster.flomesh.io/cluster-1 created")

	t.Run("a policy naming an unregistered cluster is refused", func(t *testing.T) {
		for _, gtp := range []string{"gtp-failover.yaml", "gtp-activeactive.yaml"} {
			_, errOut, err := k.try(t, kc, seed(t, gtp, nil), "apply", "-n", "httpbin", "-f", "-")
			require.Error(t, err, gtp)
			assert.Contains(t, errOut, `spec.targets[1].clusterKey: Invalid value: "default/default/default/cluster-3": no registered Cluster has this key`)
			assert.NotContains(t, errOut, "spec.targets[0]", "cluster-1 is registered")
		}
		_, err := client.GlobalTrafficPolicies("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)
	})

	t.Run("a key of the wrong region is refused with the registered key", func(t *testing.T) {
		out := k.run(t, kc, clusterManifest(t, f, "cluster-3", "eu"), "apply", "-f", "-")
		require.Contains(t, out, "cluster.flomesh.io/cluster-3 created")
		_, errOut, err := k.try(t, kc, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		require.Error(t, err)
		assert.Contains(t, errOut, `spec.targets[1].clusterKey: Invalid value: "default/default/default/cluster-3": no registered Cluster has this key; did you mean "eu/default/default/cluster-3"?`)

		// Nothing targets cluster-3 yet: it may move to the default region.
		out = k.run(t, kc, "", "patch", "cluster", "cluster-3", "--type=merge", "-p", `{"spec":{"region":"default"}}`)
		assert.Contains(t, out, "cluster.flomesh.io/cluster-3 patched")
	})

	t.Run("the example policies are accepted once their clusters are registered", func(t *testing.T) {
		out := k.run(t, kc, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin created")
		out = k.run(t, kc, seed(t, "gtp-activeactive.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin configured")
		out = k.run(t, kc, "", "get", "gtp", "-n", "httpbin")
		assert.Regexp(t, `(?m)^httpbin +ActiveActive +default/default/default/cluster-1,default/default/default/cluster-3(?: +(?:True|False|Unknown)){0,2} +\S+$`, out)
		// A dry run is judged too.
		_, errOut, err := k.try(t, kc, strings.Replace(seed(t, "gtp-failover.yaml", nil), "cluster-3", "cluster-9", 1),
			"apply", "--dry-run=server", "-n", "httpbin", "-f", "-")
		require.Error(t, err)
		assert.Contains(t, errOut, `"default/default/default/cluster-9": no registered Cluster has this key`)
	})

	t.Run("a malformed key is refused naming the field", func(t *testing.T) {
		manifest := strings.Replace(seed(t, "gtp-failover.yaml", nil), "default/default/default/cluster-3", "default/cluster-3", 1)
		manifest = strings.Replace(manifest, "name: httpbin", "name: malformed", 1)
		_, errOut, err := k.try(t, kc, manifest, "apply", "-n", "httpbin", "-f", "-")
		require.Error(t, err)
		assert.Contains(t, errOut, `spec.targets[1].clusterKey: Invalid value: "default/cluster-3": must have the form region/zone/group/name`)
	})

	t.Run("a targeted cluster can be neither deleted nor re-keyed", func(t *testing.T) {
		_, errOut, err := k.try(t, kc, "", "delete", "cluster", "cluster-3")
		require.Error(t, err)
		assert.Contains(t, errOut, `clusters.flomesh.io "cluster-3" is forbidden: cannot delete it: its key "default/default/default/cluster-3" is a target of 1 GlobalTrafficPolicy (httpbin/httpbin)`)

		_, errOut, err = k.try(t, kc, "", "patch", "cluster", "cluster-3", "--type=merge", "-p", `{"spec":{"region":"eu"}}`)
		require.Error(t, err)
		assert.Contains(t, errOut, `cannot change its key to "eu/default/default/cluster-3": its key "default/default/default/cluster-3" is a target of 1 GlobalTrafficPolicy (httpbin/httpbin)`)

		// What keeps the key may change.
		out := k.run(t, kc, "", "patch", "cluster", "cluster-3", "--type=merge", "-p", `{"spec":{"gatewayPort":83}}`)
		assert.Contains(t, out, "cluster.flomesh.io/cluster-3 patched")
		_, err = client.Clusters().Get(ctx, "cluster-3", metav1.GetOptions{})
		assert.NoError(t, err)
	})

	t.Run("a cluster can go once the policy stops naming it", func(t *testing.T) {
		manifest := strings.Replace(seed(t, "gtp-activeactive.yaml", nil), "    - clusterKey: default/default/default/cluster-3\n", "", 1)
		require.NotContains(t, manifest, "cluster-3")
		out := k.run(t, kc, manifest, "apply", "-n", "httpbin", "-f", "-")
		assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin configured")
		// At once: the plugin does not trust a cache that may still show
		// the policy as it was.
		out = k.run(t, kc, "", "delete", "cluster", "cluster-3")
		assert.Contains(t, out, `cluster.flomesh.io "cluster-3" deleted`)
	})

	t.Run("a cluster can go at once after the policy naming it is deleted", func(t *testing.T) {
		out := k.run(t, kc, clusterManifest(t, f, "cluster-2", ""), "apply", "-f", "-")
		require.Contains(t, out, "cluster.flomesh.io/cluster-2 created")
		manifest := strings.Replace(seed(t, "gtp-failover.yaml", nil), "name: httpbin", "name: web", 1)
		manifest = strings.Replace(manifest, "default/default/default/cluster-3", "default/default/default/cluster-2", 1)
		k.run(t, kc, manifest, "apply", "-n", "httpbin", "-f", "-")
		k.run(t, kc, "", "delete", "gtp", "web", "-n", "httpbin")
		out = k.run(t, kc, "", "delete", "cluster", "cluster-2")
		assert.Contains(t, out, `cluster.flomesh.io "cluster-2" deleted`)
	})

	t.Run("policies created while their clusters are deleted never name a missing cluster", func(t *testing.T) {
		for round := range 2 {
			raceRound(t, ctx, f, round, 25)
		}
	})
}

// raceRound registers n Clusters, then at once creates a policy naming each
// and deletes each, and checks that no two of a pair both went through and
// that no stored policy names a missing Cluster.
func raceRound(t *testing.T, ctx context.Context, f *framework.Federation, round, n int) {
	t.Helper()
	client := f.ControlPlane.Fedmesh().FlomeshV1alpha1()
	name := func(i int) string { return fmt.Sprintf("race-%d-%02d", round, i) }
	for i := range n {
		_, err := client.Clusters().Create(ctx, &v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: name(i)},
			Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: unreachableKubeconfig(t)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	created := make([]error, n)
	deleted := make([]error, n)
	for i := range n {
		key := "default/default/default/" + name(i)
		// Which request starts first, and by how much: spread over about
		// the time a request takes, the two meet in every interleaving.
		// A delete takes longer to judge (it lists every policy), so
		// creates start later more often.
		offset := rand.N(12*time.Millisecond) - 4*time.Millisecond
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(max(offset, 0))
			_, created[i] = client.GlobalTrafficPolicies("race").Create(ctx, &v1alpha1.GlobalTrafficPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: name(i)},
				Spec: v1alpha1.GlobalTrafficPolicySpec{
					LbType:  v1alpha1.FailOverLbType,
					Targets: []v1alpha1.TrafficTarget{{ClusterKey: key}},
				},
			}, metav1.CreateOptions{})
		}()
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(max(-offset, 0))
			deleted[i] = client.Clusters().Delete(ctx, name(i), metav1.DeleteOptions{})
		}()
	}
	close(start)
	wg.Wait()

	var policies, clusters int
	var held []string
	for i := range n {
		if created[i] == nil {
			policies++
		} else {
			assert.True(t, apierrors.IsInvalid(created[i]) || apierrors.IsConflict(created[i]), "policy %s: %v", name(i), created[i])
		}
		if deleted[i] == nil {
			clusters++
		} else {
			assert.True(t, apierrors.IsForbidden(deleted[i]) || apierrors.IsConflict(deleted[i]), "cluster %s: %v", name(i), deleted[i])
		}
		if created[i] == nil && deleted[i] == nil {
			// The deletion began before the policy was stored: the
			// finalizer keeps the Cluster while the policy names it.
			held = append(held, name(i))
		}
	}
	t.Logf("round %d, %d pairs: %d policies created, %d clusters deleted, %d of them held by a policy", round, n, policies, clusters, len(held))
	for _, c := range held {
		cl, err := client.Clusters().Get(ctx, c, metav1.GetOptions{})
		if assert.NoError(t, err, "both the policy and the deletion of its cluster %s went through, and the Cluster is gone", c) {
			assert.NotNil(t, cl.DeletionTimestamp, "cluster %s", c)
		}
	}

	keys := sets.New[string]()
	cl, err := client.Clusters().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, c := range cl.Items {
		keys.Insert(c.Status.ClusterKey)
	}
	gtps, err := client.GlobalTrafficPolicies("race").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, p := range gtps.Items {
		for _, target := range p.Spec.Targets {
			assert.True(t, keys.Has(target.ClusterKey), "policy %s names %s, which no Cluster has", p.Name, target.ClusterKey)
		}
	}

	// Once the policies go, so do the Clusters whose deletion went through.
	for i := range n {
		if created[i] == nil {
			require.NoError(t, client.GlobalTrafficPolicies("race").Delete(ctx, name(i), metav1.DeleteOptions{}))
		}
	}
	for i := range n {
		if deleted[i] == nil {
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				_, err := client.Clusters().Get(ctx, name(i), metav1.GetOptions{})
				assert.True(c, apierrors.IsNotFound(err), "cluster %s is gone: %v", name(i), err)
			}, 30*time.Second, 50*time.Millisecond)
		}
	}
}

// unreachableKubeconfig passes validation and leads nowhere: the race needs
// many Clusters, not many members.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{Token: "not-a-token"}
	cfg.Contexts["nowhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: "nobody"}
	cfg.CurrentContext = "nowhere"
	b, err := clientcmd.Write(*cfg)
	require.NoError(t, err)
	return string(b)
}

// TestAdmissionPluginDisabled turns ClusterKeyResolution off by flag: a
// policy may then name any well-formed key, while ClusterInUseProtection,
// still on, keeps protecting the Clusters policies name.
func TestAdmissionPluginDisabled(t *testing.T) {
	f := framework.Start(t, framework.Options{
		Members:     []string{"cluster-1"},
		FedmeshArgs: []string{"--disable-admission-plugins=" + clusterkeys.PluginName},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createNamespaces(t, ctx, f, "httpbin")
	k := kubectls(t)[0]
	kc := f.ControlPlane.KubeconfigPath

	out := k.run(t, kc, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
	assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin created", "no Cluster is registered, and %s is off", clusterkeys.PluginName)

	out = k.run(t, kc, clusterManifest(t, f, "cluster-1", ""), "apply", "-f", "-")
	require.Contains(t, out, "cluster.flomesh.io/cluster-1 created")
	_, errOut, err := k.try(t, kc, "", "delete", "cluster", "cluster-1")
	require.Error(t, err, "%s is still on", clusterinuse.PluginName)
	assert.Contains(t, errOut, "httpbin/httpbin")
}

// TestClusterProtectionWithoutAdmission turns both of fedmesh's plugins off,
// as a user who bypasses them would: a policy may name any key, and a
// Cluster a policy targets may be deleted, but the finalizer keeps it until
// the policy goes. The policy's status tells, per target, whether the key is
// a live registered Cluster, whether it is Ready and whether it exports the
// service.
func TestClusterProtectionWithoutAdmission(t *testing.T) {
	f := framework.Start(t, framework.Options{
		Members:     []string{"cluster-1"},
		FedmeshArgs: []string{"--disable-admission-plugins=" + clusterkeys.PluginName + "," + clusterinuse.PluginName},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	createNamespaces(t, ctx, f, "httpbin")
	k := kubectls(t)[0]
	kc := f.ControlPlane.KubeconfigPath
	client := f.ControlPlane.Fedmesh().FlomeshV1alpha1()

	out := k.run(t, kc, clusterManifest(t, f, "cluster-1", ""), "apply", "-f", "-")
	require.Contains(t, out, "cluster.flomesh.io/cluster-1 created")
	waitReady(t, ctx, f, "cluster-1", metav1.ConditionTrue, 30*time.Second)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cl, err := client.Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		require.NoError(c, err)
		assert.Contains(c, cl.Finalizers, protection.Finalizer, "the controller puts it on, admission being off")
	}, 30*time.Second, 100*time.Millisecond)
	deployHTTPBin(t, ctx, f.Member("cluster-1"))

	// cluster-3 is not registered.
	out = k.run(t, kc, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
	assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin created")
	unknown3 := v1alpha1.TargetStatus{ClusterKey: "default/default/default/cluster-3", Message: "no registered Cluster has this key"}
	waitPolicyStatus(t, ctx, f, "resolves cluster-1 only", []v1alpha1.TargetStatus{
		{ClusterKey: "default/default/default/cluster-1", Known: true, Ready: true, Exported: true},
		unknown3,
	}, "targets that name no live Cluster: default/default/default/cluster-3 (no registered Cluster has this key)")

	// The deletion goes through, and the Cluster stays while the policy
	// names it.
	out = k.run(t, kc, "", "delete", "cluster", "cluster-1", "--wait=false")
	assert.Contains(t, out, `cluster.flomesh.io "cluster-1" deleted`)
	assert.Never(t, func() bool {
		_, err := client.Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 2*time.Second, 100*time.Millisecond, "the Cluster went while a policy names it")
	deleting1 := v1alpha1.TargetStatus{ClusterKey: "default/default/default/cluster-1", Message: `Cluster "cluster-1", of this key, is being deleted`}
	waitPolicyStatus(t, ctx, f, "cluster-1 is being deleted", []v1alpha1.TargetStatus{deleting1, unknown3},
		`default/default/default/cluster-1 (Cluster "cluster-1", of this key, is being deleted)`)

	// The policy goes, and so does the Cluster.
	k.run(t, kc, "", "delete", "gtp", "httpbin", "-n", "httpbin")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := client.Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		assert.True(c, apierrors.IsNotFound(err), "cluster-1 is gone: %v", err)
	}, 30*time.Second, 100*time.Millisecond)

	// A policy that names a Cluster gone says so.
	k.run(t, kc, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
	waitPolicyStatus(t, ctx, f, "cluster-1 is gone", []v1alpha1.TargetStatus{
		{ClusterKey: "default/default/default/cluster-1", Message: "no registered Cluster has this key"},
		unknown3,
	}, "default/default/default/cluster-1 (no registered Cluster has this key), default/default/default/cluster-3")
}

// waitPolicyStatus waits until the policy httpbin/httpbin has the status
// targets want, and a Resolved condition that is True when every target is
// known, and False with a message containing msg otherwise.
func waitPolicyStatus(t *testing.T, ctx context.Context, f *framework.Federation, what string, want []v1alpha1.TargetStatus, msg string) {
	t.Helper()
	resolved := metav1.ConditionTrue
	for _, target := range want {
		if !target.Known {
			resolved = metav1.ConditionFalse
		}
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		p, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(c, err)
		assert.Equal(c, want, p.Status.Targets)
		cond := meta.FindStatusCondition(p.Status.Conditions, protection.ConditionResolved)
		require.NotNil(c, cond, "a Resolved condition")
		assert.Equal(c, resolved, cond.Status)
		assert.Equal(c, p.Generation, cond.ObservedGeneration)
		assert.Contains(c, cond.Message, msg)
	}, 30*time.Second, 100*time.Millisecond, what)
}
