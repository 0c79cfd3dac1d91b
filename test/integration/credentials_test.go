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
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/members"
	"github.com/fedmesh/fedmesh/test/framework"
)

// hostileKubeconfig is a kubeconfig that, were fedmesh to honour it, would
// run a command (touching marker), read a file (tokenFile, whose token the
// server would receive) and send it to server without verifying who
// answers.
func hostileKubeconfig(t *testing.T, server, marker, tokenFile string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{
		TokenFile: tokenFile,
		Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1", Command: "/usr/bin/touch", Args: []string{marker},
			InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		},
	}
	cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "u"}
	cfg.CurrentContext = "m"
	b, err := clientcmd.Write(*cfg)
	require.NoError(t, err)
	return string(b)
}

// TestHostileKubeconfigRefusedThroughKubectl: whoever may create Clusters
// cannot make fedmesh run code, read files or send credentials in the
// clear; kubectl says which kubeconfig key is refused.
func TestHostileKubeconfigRefusedThroughKubectl(t *testing.T) {
	f := framework.Start(t, framework.Options{})
	k := kubectls(t)[0]
	kc := f.ControlPlane.KubeconfigPath

	b, err := f.ControlPlane.Kubeconfig()
	require.NoError(t, err)
	cluster := func(mutate func(cfg *clientcmdapi.Config)) string {
		cfg, err := clientcmd.Load(b)
		require.NoError(t, err)
		mutate(cfg)
		out, err := clientcmd.Write(*cfg)
		require.NoError(t, err)
		obj := map[string]any{
			"apiVersion": "flomesh.io/v1alpha1", "kind": "Cluster",
			"metadata": map[string]any{"name": "hostile"},
			"spec":     map[string]any{"gatewayHost": "127.0.0.1", "kubeconfig": string(out)},
		}
		j, err := json.Marshal(obj)
		require.NoError(t, err)
		return string(j)
	}
	user := func(cfg *clientcmdapi.Config) *clientcmdapi.AuthInfo {
		return cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	}
	server := func(cfg *clientcmdapi.Config) *clientcmdapi.Cluster {
		return cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	}
	for _, tc := range []struct {
		name   string
		mutate func(cfg *clientcmdapi.Config)
		want   string
	}{
		{"exec plugin", func(cfg *clientcmdapi.Config) {
			user(cfg).Exec = &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "id"}
		}, `spec.kubeconfig.users[admin].user.exec: Forbidden`},
		{"token file", func(cfg *clientcmdapi.Config) {
			*user(cfg) = clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"}
		}, `spec.kubeconfig.users[admin].user.tokenFile: Forbidden`},
		{"certificate files", func(cfg *clientcmdapi.Config) {
			*user(cfg) = clientcmdapi.AuthInfo{ClientCertificate: "/etc/x.crt", ClientKey: "/etc/x.key"}
		}, `spec.kubeconfig.users[admin].user.client-certificate: Forbidden`},
		{"impersonation", func(cfg *clientcmdapi.Config) { user(cfg).Impersonate = "system:admin" },
			`spec.kubeconfig.users[admin].user.act-as: Forbidden`},
		{"plain http", func(cfg *clientcmdapi.Config) { server(cfg).Server = "http://127.0.0.1:8080" },
			`.cluster.server: Forbidden: must be https`},
		{"server path", func(cfg *clientcmdapi.Config) { server(cfg).Server += "/api/v1/namespaces" },
			`.cluster.server: Forbidden: must not have a path`},
		{"insecure TLS", func(cfg *clientcmdapi.Config) {
			server(cfg).CertificateAuthorityData = nil
			server(cfg).InsecureSkipTLSVerify = true
		}, `.cluster.insecure-skip-tls-verify: Forbidden`},
		{"proxy", func(cfg *clientcmdapi.Config) { server(cfg).ProxyURL = "http://127.0.0.1:3128" },
			`.cluster.proxy-url: Forbidden`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := k.try(t, kc, cluster(tc.mutate), "apply", "-f", "-")
			require.Error(t, err, "the Cluster must be refused")
			assert.Contains(t, errOut, `The Cluster "hostile" is invalid`)
			assert.Contains(t, errOut, tc.want)
		})
	}
	// The walkthrough's form, client certificate data, applies.
	k.run(t, kc, cluster(func(*clientcmdapi.Config) {}), "apply", "-f", "-")
}

// TestHostileKubeconfigInEtcdStaysInert writes a hostile Cluster straight
// into etcd, as one stored under older rules or by someone who bypassed
// the API would be: neither fedmesh-apiserver nor fedmesh-syncer runs its
// command, reads its file or connects to its server, and the Cluster
// reports Ready=False, InvalidKubeconfig.
func TestHostileKubeconfigInEtcdStaysInert(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}, WithSyncer: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var hits atomic.Int32
	var sawToken atomic.Bool
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if strings.Contains(r.Header.Get("Authorization"), "file-token") {
			sawToken.Store(true)
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer target.Close()
	dir := t.TempDir()
	marker := filepath.Join(dir, "exec-ran")
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("file-token"), 0o600))

	// A valid Cluster through the API, then tampered with in etcd.
	kc, err := f.Member("cluster-1").Kubeconfig()
	require.NoError(t, err)
	clusters := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters()
	_, err = clusters.Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"},
		Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: string(kc)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionTrue, clusterset.ReasonConnected)

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{f.EtcdURL()}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer etcd.Close()
	resp, err := etcd.Get(ctx, "/fedmesh/", clientv3.WithPrefix())
	require.NoError(t, err)
	var key string
	var stored map[string]any
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/clusters/cluster-1") {
			key = string(kv.Key)
			require.NoError(t, json.Unmarshal(kv.Value, &stored), "the Cluster is stored as JSON")
		}
	}
	require.NotEmpty(t, key, "the Cluster is in etcd under /fedmesh")
	stored["spec"].(map[string]any)["kubeconfig"] = hostileKubeconfig(t, target.URL, marker, tokenFile)
	tampered, err := json.Marshal(stored)
	require.NoError(t, err)
	_, err = etcd.Put(ctx, key, string(tampered))
	require.NoError(t, err)

	got := waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionFalse, clusterset.ReasonInvalidKubeconfig)
	assert.Contains(t, got.Message, "spec.kubeconfig.users[u].user.exec")
	assert.Contains(t, got.Message, "spec.kubeconfig.users[u].user.tokenFile")
	assert.Contains(t, got.Message, "spec.kubeconfig.clusters[m].cluster.insecure-skip-tls-verify")

	// The syncer judged the same object, by the same rules.
	require.NoError(t, wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		log, err := os.ReadFile(f.Syncer().Log())
		return err == nil && strings.Contains(string(log), "credentials refused"), nil
	}), "the syncer never judged the tampered Cluster")

	_, err = os.Stat(marker)
	assert.True(t, os.IsNotExist(err), "the exec plugin ran")
	assert.Zero(t, hits.Load(), "fedmesh connected to the server the tampered Cluster named")
	assert.False(t, sawToken.Load(), "fedmesh read the token file")

	// And the object stays manageable: it can be labelled (the kubeconfig
	// is not judged again while it is unchanged) and deleted.
	c, err := clusters.Get(ctx, "cluster-1", metav1.GetOptions{})
	require.NoError(t, err)
	c.Labels = map[string]string{"quarantined": "true"}
	_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, clusters.Delete(ctx, "cluster-1", metav1.DeleteOptions{}))
}

// waitReadyReason waits until the Cluster's Ready condition has status
// and reason, and returns it.
func waitReadyReason(t *testing.T, ctx context.Context, f *framework.Federation, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		c, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = meta.FindStatusCondition(c.Status.Conditions, clusterset.ConditionReady)
		return last != nil && last.Status == status && last.Reason == reason, nil
	})
	require.NoError(t, err, "Cluster %s never Ready=%s/%s; last: %+v", name, status, reason, last)
	return *last
}

// memberToken makes, in a member, a ServiceAccount allowed everything and
// returns a token of it.
func memberToken(t *testing.T, ctx context.Context, m *framework.Cluster, name string) string {
	t.Helper()
	kube := m.Kube()
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: name}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	tr, err := kube.CoreV1().ServiceAccounts(name).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// TestCredentialsInASecret registers a member by a Secret of the namespace
// of member credentials: the Cluster carries no credential, both servers
// connect with the Secret's data, follow it when it changes, and report
// when it is gone; and a registrar may write Clusters and those Secrets
// without being able to read any member's credentials.
func TestCredentialsInASecret(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}, WithSyncer: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := f.Member("cluster-1")
	token := memberToken(t, ctx, m, "fedmesh-test")
	kc, err := m.Kubeconfig()
	require.NoError(t, err)
	cfg, err := clientcmd.Load(kc)
	require.NoError(t, err)
	ca := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthorityData

	secrets := f.ControlPlane.Kube().CoreV1().Secrets(members.DefaultSecretsNamespace)
	secret := func(token string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-1", Namespace: members.DefaultSecretsNamespace},
			Data: map[string][]byte{
				members.SecretServerKey: []byte(m.Server()), members.SecretCAKey: ca, members.SecretTokenKey: []byte(token),
			},
		}
	}
	_, err = secrets.Create(ctx, secret(token), metav1.CreateOptions{})
	require.NoError(t, err)
	clusters := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters()
	_, err = clusters.Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"},
		Spec: v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1",
			CredentialsSecretRef: &v1alpha1.CredentialsSecretReference{Name: "cluster-1"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Ready needs the member CRDs, which the syncer installs: both
	// servers connected with the Secret's data.
	waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionTrue, clusterset.ReasonConnected)

	k := kubectls(t)[0]
	out := k.run(t, f.ControlPlane.KubeconfigPath, "", "get", "cluster", "cluster-1", "-o", "yaml")
	assert.NotContains(t, out, token)
	assert.NotContains(t, out, "kubeconfig")
	assert.Contains(t, out, "credentialsSecretRef")

	// A Secret that changes is followed: a token the member refuses...
	_, err = secrets.Update(ctx, secret("not-a-token"), metav1.UpdateOptions{})
	require.NoError(t, err)
	waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionFalse, clusterset.ReasonUnauthorized)
	// ...a Secret that goes...
	require.NoError(t, secrets.Delete(ctx, "cluster-1", metav1.DeleteOptions{}))
	c := waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionFalse, clusterset.ReasonInvalidCredentials)
	assert.Contains(t, c.Message, "credentials Secret fedmesh-members/cluster-1 not found")
	// ...and one that comes back.
	_, err = secrets.Create(ctx, secret(token), metav1.CreateOptions{})
	require.NoError(t, err)
	waitReadyReason(t, ctx, f, "cluster-1", metav1.ConditionTrue, clusterset.ReasonConnected)

	// A registrar, bound to the fedmesh:registrar roles, writes Clusters
	// and credentials but reads no credentials.
	kube := f.ControlPlane.Kube()
	_, err = kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "registrar"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "fedmesh:registrar"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "registrar"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.RbacV1().RoleBindings(members.DefaultSecretsNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "registrar"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "fedmesh:registrar"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "registrar"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	rc, err := f.ControlPlane.UserConfig("registrar")
	require.NoError(t, err)
	registrar := kubernetes.NewForConfigOrDie(rc)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := registrar.CoreV1().Secrets(members.DefaultSecretsNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-2"}}, metav1.CreateOptions{})
		assert.NoError(c, err, "the registrar writes credentials")
	}, 10*time.Second, 200*time.Millisecond)
	_, err = registrar.CoreV1().Secrets(members.DefaultSecretsNamespace).Get(ctx, "cluster-1", metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "the registrar reads a member's credentials: %v", err)
	_, err = registrar.CoreV1().Secrets(members.DefaultSecretsNamespace).List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "the registrar lists members' credentials: %v", err)
	list, err := versioned.NewForConfigOrDie(rc).FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "the registrar lists Clusters")
	require.Len(t, list.Items, 1)
	assert.Empty(t, list.Items[0].Spec.Kubeconfig, "and finds no credential in them")
}

// TestStatusRepeatsNothingAMemberSays registers a "member" that answers
// every request with an error page full of internal detail: whoever reads
// the Cluster learns the HTTP status, never the page.
func TestStatusRepeatsNothingAMemberSays(t *testing.T) {
	f := framework.Start(t, framework.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const page = "internal admin panel at http://10.1.2.3:8080/ - version v9.9.9-secret"
	for _, tc := range []struct {
		name, want string
		code       int
		reason     string
	}{
		{"forbidden", "HTTP 403", http.StatusForbidden, clusterset.ReasonForbidden},
		{"bad-gateway", "the member answered HTTP 502", http.StatusBadGateway, clusterset.ReasonUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			member := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte(page))
			}))
			defer member.Close()
			ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: member.Certificate().Raw})
			cfg := clientcmdapi.NewConfig()
			cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: member.URL, CertificateAuthorityData: ca}
			cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t0k3n"}
			cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "u"}
			cfg.CurrentContext = "m"
			kc, err := clientcmd.Write(*cfg)
			require.NoError(t, err)
			_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: tc.name},
				Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: string(kc)},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
			c := waitReadyReason(t, ctx, f, tc.name, metav1.ConditionFalse, tc.reason)
			assert.Contains(t, c.Message, tc.want)
			out := kubectls(t)[0].run(t, f.ControlPlane.KubeconfigPath, "", "get", "cluster", tc.name, "-o", "yaml")
			assert.NotContains(t, out, "10.1.2.3")
			assert.NotContains(t, out, "admin panel")
			assert.NotContains(t, out, "v9.9.9")
		})
	}
}
