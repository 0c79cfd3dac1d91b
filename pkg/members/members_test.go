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

package members

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

func cluster(t *testing.T, mutate func(cfg *clientcmdapi.Config)) *v1alpha1.Cluster {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("ca"), TLSServerName: "member"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t0k3n", ClientCertificateData: []byte("cert"), ClientKeyData: []byte("key")}
	cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "u"}
	cfg.CurrentContext = "m"
	if mutate != nil {
		mutate(cfg)
	}
	b, err := clientcmd.Write(*cfg)
	require.NoError(t, err)
	return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}, Spec: v1alpha1.ClusterSpec{Kubeconfig: string(b)}}
}

func TestRESTConfigIsBuiltFromDataOnly(t *testing.T) {
	cfg, err := Resolve(cluster(t, nil), nil, DefaultOptions()).RESTConfig("fedmesh-test", 7*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:6443", cfg.Host)
	assert.Equal(t, "t0k3n", cfg.BearerToken)
	assert.Equal(t, []byte("ca"), cfg.CAData)
	assert.Equal(t, "member", cfg.ServerName)
	assert.Equal(t, []byte("cert"), cfg.CertData)
	assert.Equal(t, []byte("key"), cfg.KeyData)
	assert.Equal(t, 7*time.Second, cfg.Timeout)
	assert.Equal(t, "fedmesh-test", cfg.UserAgent)
	// Nothing that runs, reads or impersonates.
	assert.Nil(t, cfg.ExecProvider)
	assert.Nil(t, cfg.AuthProvider)
	assert.Empty(t, cfg.BearerTokenFile)
	assert.Empty(t, cfg.CAFile+cfg.CertFile+cfg.KeyFile)
	assert.Empty(t, cfg.Impersonate.UserName)
	assert.False(t, cfg.Insecure)
	assert.Nil(t, cfg.Proxy, "no proxy unless the policy allows one")
	assert.NotNil(t, cfg.WrapTransport, "responses are bounded")
}

func TestRESTConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(cfg *clientcmdapi.Config)
		policy Policy
		want   string // "" when accepted
	}{
		{name: "exec", mutate: func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["u"].Exec = &clientcmdapi.ExecConfig{Command: "id", APIVersion: "client.authentication.k8s.io/v1"}
		}, policy: Policy{AllowPlainHTTP: true, AllowInsecureTLS: true, AllowProxy: true, AllowServerPath: true},
			want: "spec.kubeconfig.users[u].user.exec"},
		{name: "token file", mutate: func(cfg *clientcmdapi.Config) { cfg.AuthInfos["u"].TokenFile = "/t" },
			want: "spec.kubeconfig.users[u].user.tokenFile"},
		{name: "http", mutate: func(cfg *clientcmdapi.Config) { cfg.Clusters["m"].Server = "http://127.0.0.1:8080" },
			want: "spec.kubeconfig.clusters[m].cluster.server"},
		{name: "http allowed", mutate: func(cfg *clientcmdapi.Config) { cfg.Clusters["m"].Server = "http://127.0.0.1:8080" },
			policy: Policy{AllowPlainHTTP: true}},
		{name: "proxy", mutate: func(cfg *clientcmdapi.Config) { cfg.Clusters["m"].ProxyURL = "http://127.0.0.1:3128" },
			want: "spec.kubeconfig.clusters[m].cluster.proxy-url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Resolve(cluster(t, tc.mutate), nil, Options{Policy: tc.policy}).RESTConfig("fedmesh-test", time.Second)
			if tc.want == "" {
				require.NoError(t, err)
				assert.NotNil(t, cfg)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrRefused))
			assert.ErrorContains(t, err, tc.want)
			assert.Nil(t, cfg)
		})
	}
}

func TestRESTConfigProxyOnlyWhenAllowed(t *testing.T) {
	cfg, err := Resolve(cluster(t, func(cfg *clientcmdapi.Config) {
		cfg.Clusters["m"].ProxyURL = "http://127.0.0.1:3128"
	}), nil, Options{Policy: Policy{AllowProxy: true}}).RESTConfig("fedmesh-test", time.Second)
	require.NoError(t, err)
	require.NotNil(t, cfg.Proxy)
	req, _ := http.NewRequest(http.MethodGet, cfg.Host, nil)
	u, err := cfg.Proxy(req)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:3128", u.Host)
}

// secrets is a namespace of Secrets.
type secrets map[string]*corev1.Secret

func (s secrets) Get(name string) (*corev1.Secret, error) {
	if secret, ok := s[name]; ok {
		return secret, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
}

func secretCluster(name string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"},
		Spec: v1alpha1.ClusterSpec{CredentialsSecretRef: &v1alpha1.CredentialsSecretReference{Name: name}}}
}

func secret(server, ca, token string) *corev1.Secret {
	return &corev1.Secret{Data: map[string][]byte{SecretServerKey: []byte(server), SecretCAKey: []byte(ca), SecretTokenKey: []byte(token)}}
}

func TestResolveFromSecret(t *testing.T) {
	opts := DefaultOptions()
	for _, tc := range []struct {
		name    string
		secrets Secrets
		want    string // the error, "" when resolved
	}{
		{name: "resolved", secrets: secrets{"s": secret("https://127.0.0.1:6443", "ca", "t0k3n\n")}},
		{name: "missing", secrets: secrets{}, want: "credentials Secret fedmesh-members/s not found"},
		{name: "standalone", secrets: nil, want: "reads no Secret"},
		{name: "http", secrets: secrets{"s": secret("http://127.0.0.1:8080", "ca", "t")}, want: "data[server]: Forbidden: must be https"},
		{name: "a path", secrets: secrets{"s": secret("https://127.0.0.1/x", "ca", "t")}, want: "data[server]: Forbidden: must not have a path"},
		{name: "no server", secrets: secrets{"s": secret("", "ca", "t")}, want: "data[server]: Required"},
		{name: "no token", secrets: secrets{"s": secret("https://127.0.0.1", "ca", "")}, want: "data[token]: Required"},
		{name: "a token of spaces", secrets: secrets{"s": secret("https://127.0.0.1", "ca", " \n")}, want: "data[token]: Required"},
		{name: "a token of two words", secrets: secrets{"s": secret("https://127.0.0.1", "ca", "t0k3n\r\nX-Other: 1")},
			want: "data[token]: Invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := Resolve(secretCluster("s"), tc.secrets, opts)
			assert.Equal(t, "default/default/default/cluster-1", target.Key)
			cfg, err := target.RESTConfig("fedmesh-test", time.Second)
			if tc.want != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrRefused))
				assert.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "https://127.0.0.1:6443", cfg.Host)
			assert.Equal(t, "t0k3n", cfg.BearerToken, "trailing space trimmed")
			assert.Equal(t, []byte("ca"), cfg.CAData)
			assert.Nil(t, cfg.ExecProvider)
		})
	}
}

// Target.Same is the one rule for reconnecting: a new key or new
// credentials, from the Cluster or from its Secret, need a new connection;
// a new gateway does not.
func TestTargetSame(t *testing.T) {
	opts := DefaultOptions()
	base := cluster(t, nil)
	base.Spec.Region, base.Spec.GatewayHost = "r", "h"
	baseTarget := Resolve(base, nil, opts)
	s := secrets{"s": secret("https://127.0.0.1:6443", "ca", "t1")}
	fromSecret := Resolve(secretCluster("s"), s, opts)
	for _, tc := range []struct {
		name string
		got  func() Target
		same bool
	}{
		{"unchanged", func() Target { return Resolve(base.DeepCopy(), nil, opts) }, true},
		{"gateway", func() Target {
			c := base.DeepCopy()
			c.Spec.GatewayHost, c.Spec.GatewayPort = "h2", 81
			return Resolve(c, nil, opts)
		}, true},
		{"key", func() Target { c := base.DeepCopy(); c.Spec.Zone = "z2"; return Resolve(c, nil, opts) }, false},
		{"kubeconfig", func() Target {
			return Resolve(&v1alpha1.Cluster{ObjectMeta: base.ObjectMeta, Spec: v1alpha1.ClusterSpec{Region: "r",
				Kubeconfig: cluster(t, func(cfg *clientcmdapi.Config) { cfg.AuthInfos["u"].Token = "other" }).Spec.Kubeconfig}}, nil, opts)
		}, false},
		{"the same kubeconfig, reformatted", func() Target {
			c := base.DeepCopy()
			c.Spec.Kubeconfig += "\n\n"
			return Resolve(c, nil, opts)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.same, baseTarget.Same(tc.got()))
		})
	}
	// A Secret rotated in place.
	assert.True(t, fromSecret.Same(Resolve(secretCluster("s"), s, opts)))
	s["s"] = secret("https://127.0.0.1:6443", "ca", "t2")
	assert.False(t, fromSecret.Same(Resolve(secretCluster("s"), s, opts)), "a rotated token needs a new connection")
	delete(s, "s")
	gone := Resolve(secretCluster("s"), s, opts)
	assert.False(t, fromSecret.Same(gone))
	assert.True(t, gone.Same(Resolve(secretCluster("s"), s, opts)), "still missing is no change")
}

func TestKey(t *testing.T) {
	assert.Equal(t, "default/default/default/c", Key("c", &v1alpha1.ClusterSpec{}))
	assert.Equal(t, "r/z/g/c", Key("c", &v1alpha1.ClusterSpec{Region: "r", Zone: "z", Group: "g"}))
	assert.Equal(t, "r/default/g/c", Key("c", &v1alpha1.ClusterSpec{Region: "r", Group: "g"}))
}

func TestFlagsOffByDefault(t *testing.T) {
	o := DefaultOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	require.NoError(t, fs.Parse(nil))
	defaultLimits := Limits{MaxResponseBytes: 256 << 20, MaxEventBytes: 4 << 20}
	assert.Equal(t, Options{SecretsNamespace: "fedmesh-members", Limits: defaultLimits}, o)
	require.NoError(t, fs.Parse([]string{"--allow-plain-http-members", "--allow-insecure-member-tls", "--allow-member-proxy",
		"--allow-member-server-path", "--member-secrets-namespace=creds"}))
	assert.Equal(t, Options{SecretsNamespace: "creds", Limits: defaultLimits,
		Policy: Policy{AllowPlainHTTP: true, AllowInsecureTLS: true, AllowProxy: true, AllowServerPath: true}}, o)
	require.NoError(t, fs.Parse([]string{"--member-max-response-bytes=1000", "--member-max-watch-event-bytes=100"}))
	assert.Equal(t, Limits{MaxResponseBytes: 1000, MaxEventBytes: 100}, o.Limits)
}

func TestClustersUsing(t *testing.T) {
	byKubeconfig := cluster(t, nil)
	byKubeconfig.Name = "inline"
	a, b, c := secretCluster("s"), secretCluster("s"), secretCluster("other")
	a.Name, b.Name, c.Name = "a", "b", "c"
	clusters := []*v1alpha1.Cluster{byKubeconfig, a, b, c}
	assert.Equal(t, []string{"a", "b"}, ClustersUsing(clusters, "s"))
	assert.Equal(t, []string{"c"}, ClustersUsing(clusters, "other"))
	assert.Empty(t, ClustersUsing(clusters, "none"))
}
