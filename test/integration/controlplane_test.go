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
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/test/framework"
)

// TestControlPlane drives fedmesh-apiserver through the control plane's
// aggregator, with real kubectls, on one federation of three members.
func TestControlPlane(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1", "cluster-2", "cluster-3"}})
	cp := f.ControlPlane
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("discovery through the aggregator", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(cp.Config())
		require.NoError(t, err)
		list, err := dc.ServerResourcesForGroupVersion("flomesh.io/v1alpha1")
		require.NoError(t, err)
		var names []string
		for _, r := range list.APIResources {
			names = append(names, r.Name)
		}
		assert.Contains(t, names, "clusters")
		assert.Contains(t, names, "globaltrafficpolicies")
	})

	_, err := cp.Kube().CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	for i, k := range kubectls(t) {
		t.Run(k.name+" kubectl", func(t *testing.T) {
			kc := cp.KubeconfigPath
			members := []string{"cluster-1", "cluster-3"}
			if i > 0 {
				// Each kubectl registers its own clusters, so both are
				// seen creating rather than finding objects in place.
				members = []string{"cluster-2"}
			}
			for j, name := range members {
				memberKubeconfig, err := f.Member(name).Kubeconfig()
				require.NoError(t, err)
				manifest := seed(t, "cluster.yaml", map[string]string{
					"CLUSTER_NAME":                        name,
					"HOST_IP":                             "127.0.0.1",
					"PORT":                                []string{"81", "83"}[j%2],
					"KUBECONFIG_OF_THE_MEMBER_INDENTED_4": indent(string(memberKubeconfig), 4),
				})
				out := k.run(t, kc, manifest, "apply", "-f", "-")
				assert.Contains(t, out, "cluster.flomesh.io/"+name+" created")
			}

			out := k.run(t, kc, "", "get", "clusters")
			header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
			assert.Equal(t, []string{"NAME", "KEY", "GATEWAY", "READY", "AGE"}, header)
			for _, name := range members {
				assert.Regexp(t, "(?m)^"+name+" +default/default/default/"+name+` +127\.0\.0\.1:8[13] +(Unknown|False|True) +\S+$`, out)
			}
			assert.NotContains(t, out, "certificate-authority-data", "no kubeconfig in the table")

			wide := k.run(t, kc, "", "get", "clusters", "-o", "wide")
			assert.Contains(t, strings.SplitN(wide, "\n", 2)[0], "EXPORTS")

			for _, gtp := range []string{"gtp-failover.yaml", "gtp-activeactive.yaml"} {
				out := k.run(t, kc, seed(t, gtp, nil), "apply", "-n", "httpbin", "-f", "-")
				assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin")
			}
			out = k.run(t, kc, "", "get", "gtp", "-n", "httpbin")
			assert.Regexp(t, `(?m)^httpbin +ActiveActive +default/default/default/cluster-1,default/default/default/cluster-3(?: +(?:True|False|Unknown)){0,2} +\S+$`, out)

			explain := k.run(t, kc, "", "explain", "globaltrafficpolicy.spec.lbType")
			assert.Contains(t, explain, "Locality")
			assert.Contains(t, explain, "FailOver")

			// Server-side apply, by a second manager taking over lbType.
			ssa := k.run(t, kc, strings.Replace(seed(t, "gtp-failover.yaml", nil), "name: httpbin", "name: httpbin-ssa", 1),
				"apply", "--server-side", "-n", "httpbin", "-f", "-")
			assert.Contains(t, ssa, "globaltrafficpolicy.flomesh.io/httpbin-ssa serverside-applied")
			_, errOut, err := k.try(t, kc, "apiVersion: flomesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: httpbin-ssa}\nspec: {lbType: ActiveActive}\n",
				"apply", "--server-side", "--field-manager=other", "-n", "httpbin", "-f", "-")
			require.Error(t, err, "a second manager changing lbType conflicts")
			assert.Contains(t, errOut, "conflict")
			k.run(t, kc, "", "delete", "gtp", "httpbin-ssa", "-n", "httpbin")

			// A bad key is refused naming the field.
			_, errOut, err = k.try(t, kc, strings.Replace(seed(t, "gtp-failover.yaml", nil), "default/default/default/cluster-3", "default/cluster-3", 1),
				"apply", "-n", "httpbin", "-f", "-")
			require.Error(t, err)
			assert.Contains(t, errOut, "spec.targets[1].clusterKey")
		})
	}

	t.Run("a user without RBAC permission is forbidden", func(t *testing.T) {
		cfg, err := cp.UserConfig("mallory")
		require.NoError(t, err)
		_, err = versioned.NewForConfigOrDie(cfg).FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	})

	// The stock roles, as a cluster's admin grants them: fedmesh's rules
	// reach them through the aggregated ClusterRoles of artifacts/deploy,
	// which the controller manager's clusterrole-aggregation controller
	// folds into view, edit and admin.
	t.Run("a user granted the stock view role reads imports and policies but not clusters", func(t *testing.T) {
		_, err := cp.Kube().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "alice-view"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "alice", APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		cfg, err := cp.UserConfig("alice")
		require.NoError(t, err)
		client := versioned.NewForConfigOrDie(cfg).FlomeshV1alpha1()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			list, err := client.GlobalTrafficPolicies("httpbin").List(ctx, metav1.ListOptions{})
			if assert.NoError(c, err) {
				assert.NotEmpty(c, list.Items)
			}
			_, err = client.GlobalTrafficPolicies("").List(ctx, metav1.ListOptions{})
			assert.NoError(c, err, "policies of every namespace")
			_, err = client.ServiceImports("").List(ctx, metav1.ListOptions{})
			assert.NoError(c, err, "imports of every namespace")
		}, 10*time.Second, 100*time.Millisecond)
		_, err = client.Clusters().List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "clusters hold credentials: want Forbidden, got %v", err)
		_, err = client.Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsForbidden(err), "clusters hold credentials: want Forbidden, got %v", err)
		err = client.GlobalTrafficPolicies("httpbin").Delete(ctx, "httpbin", metav1.DeleteOptions{})
		assert.True(t, apierrors.IsForbidden(err), "view cannot delete: want Forbidden, got %v", err)
	})

	t.Run("a user granted the stock edit role in a namespace manages its policies", func(t *testing.T) {
		_, err := cp.Kube().RbacV1().RoleBindings("httpbin").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "bob-edit"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "edit"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "bob", APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		cfg, err := cp.UserConfig("bob")
		require.NoError(t, err)
		client := versioned.NewForConfigOrDie(cfg).FlomeshV1alpha1()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			err := client.GlobalTrafficPolicies("httpbin").Delete(ctx, "httpbin", metav1.DeleteOptions{})
			assert.NoError(c, err, "edit may delete a policy of its namespace")
		}, 10*time.Second, 100*time.Millisecond)
		_, err = client.GlobalTrafficPolicies("default").List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "only in its namespace: want Forbidden, got %v", err)
		_, err = client.Clusters().List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "clusters hold credentials: want Forbidden, got %v", err)
	})

	t.Run("a namespace editor targets only the Clusters a role lets it target, and learns no key", func(t *testing.T) {
		// bob edits httpbin (the previous subtest bound him).
		cfg, err := cp.UserConfig("bob")
		require.NoError(t, err)
		gtps := versioned.NewForConfigOrDie(cfg).FlomeshV1alpha1().GlobalTrafficPolicies("httpbin")
		policy := func(name string, keys ...string) *v1alpha1.GlobalTrafficPolicy {
			p := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType}}
			for _, k := range keys {
				p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
			}
			return p
		}
		// A registered key, a typo of it and a key of no Cluster: the same
		// refusal, so the answer tells nothing of what is registered.
		_, err = gtps.Create(ctx, policy("pinned", "default/default/default/cluster-1", "default/default/default/cluster-11", "default/default/default/nowhere"), metav1.CreateOptions{})
		require.Error(t, err)
		assert.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
		assert.NotContains(t, err.Error(), "did you mean")
		assert.NotContains(t, err.Error(), "no registered Cluster")
		for i, name := range []string{"cluster-1", "cluster-11", "nowhere"} {
			assert.Contains(t, err.Error(), fmt.Sprintf(`spec.targets[%d].clusterKey: Forbidden: targeting the Cluster %q needs the verb "target"`, i, name))
		}

		// A RoleBinding of fedmesh:cluster-targeter in httpbin, for
		// cluster-1 only.
		_, err = cp.Kube().RbacV1().Roles("httpbin").Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "target-cluster-1"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"flomesh.io"}, Resources: []string{"clusters"}, ResourceNames: []string{"cluster-1"}, Verbs: []string{"target"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = cp.Kube().RbacV1().RoleBindings("httpbin").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "bob-targets"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "target-cluster-1"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "bob", APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := gtps.Create(ctx, policy("pinned", "default/default/default/cluster-1"), metav1.CreateOptions{})
			assert.NoError(c, err, "bob may target cluster-1 from httpbin")
		}, 20*time.Second, 250*time.Millisecond, "fedmesh-apiserver caches the control plane's denials for 10s")
		_, err = gtps.Create(ctx, policy("other", "default/default/default/cluster-3"), metav1.CreateOptions{})
		assert.True(t, apierrors.IsInvalid(err), "cluster-3 is not bob's to target: %v", err)
		// A target he may name but that is misspelt: no hint.
		_, err = gtps.Create(ctx, policy("typo", "eu/default/default/cluster-1"), metav1.CreateOptions{})
		if assert.Error(t, err) {
			assert.Contains(t, err.Error(), "no registered Cluster has this key")
			assert.NotContains(t, err.Error(), "did you mean")
		}
		require.NoError(t, gtps.Delete(ctx, "pinned", metav1.DeleteOptions{}))
	})

	t.Run("an unauthenticated client is unauthorized", func(t *testing.T) {
		cfg := &rest.Config{Host: cp.Server(), BearerToken: "not-a-token",
			TLSClientConfig: rest.TLSClientConfig{CAFile: cp.Config().CAFile}}
		_, err := versioned.NewForConfigOrDie(cfg).FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsUnauthorized(err), "want Unauthorized, got %v", err)
	})
}
