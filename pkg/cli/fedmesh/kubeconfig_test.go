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
package fedmesh

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

var testCA = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

// fakeToken is a JWT shaped like a Kubernetes service account token; its
// signature is not one.
func fakeToken(t *testing.T, namespace, name, uid string) string {
	t.Helper()
	claims := map[string]interface{}{
		"iss": "https://member.example",
		"sub": "system:serviceaccount:" + namespace + ":" + name,
		"kubernetes.io": map[string]interface{}{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": name, "uid": uid},
		},
	}
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + "." + enc([]byte("signature"))
}

func TestBuildKubeconfig(t *testing.T) {
	tests := []struct {
		name    string
		ep      endpoint
		wantErr string
	}{
		{name: "CA embedded", ep: endpoint{Server: "https://10.0.0.11:6443", CAData: testCA}},
		{name: "server name and proxy kept", ep: endpoint{Server: "https://10.0.0.11:6443", CAData: testCA, TLSServerName: "api.member", ProxyURL: "socks5://proxy:1080"}},
		{name: "insecure kept", ep: endpoint{Server: "https://10.0.0.11:6443", Insecure: true}},
		{name: "no server", ep: endpoint{CAData: testCA}, wantErr: "no server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := buildKubeconfig("cluster-1", tt.ep, "the-token")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			cfg, err := clientcmd.Load(b)
			require.NoError(t, err)
			require.Len(t, cfg.Clusters, 1)
			require.Len(t, cfg.AuthInfos, 1)
			require.Len(t, cfg.Contexts, 1)
			assert.Equal(t, "cluster-1", cfg.CurrentContext)
			c := cfg.Clusters["cluster-1"]
			require.NotNil(t, c)
			assert.Equal(t, tt.ep.Server, c.Server)
			assert.Equal(t, tt.ep.CAData, c.CertificateAuthorityData)
			assert.Empty(t, c.CertificateAuthority, "the CA is embedded, not a path")
			assert.Equal(t, tt.ep.TLSServerName, c.TLSServerName)
			assert.Equal(t, tt.ep.ProxyURL, c.ProxyURL)
			assert.Equal(t, tt.ep.Insecure, c.InsecureSkipTLSVerify)
			u := cfg.AuthInfos[fedmeshUser]
			require.NotNil(t, u)
			assert.Equal(t, &clientcmdapi.AuthInfo{Token: "the-token", LocationOfOrigin: u.LocationOfOrigin, Extensions: u.Extensions}, u,
				"the user holds the token and nothing else")

			// What rotate reads back is what join wrote.
			back, err := endpointOf(string(b))
			require.NoError(t, err)
			assert.Equal(t, tt.ep, back)
			assert.Equal(t, "the-token", tokenOf(string(b)))
			// The kubeconfig is usable as it is.
			_, err = clientcmd.RESTConfigFromKubeConfig(b)
			assert.NoError(t, err)
		})
	}
}

func TestRedactKubeconfig(t *testing.T) {
	withToken, err := buildKubeconfig("c", endpoint{Server: "https://m:6443", CAData: testCA}, "secret-token-value")
	require.NoError(t, err)
	admin := clientcmdapi.NewConfig()
	admin.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://m:6443"}
	admin.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: []byte("public-cert"), ClientKeyData: []byte("secret-key-value"),
		Username: "u", Password: "secret-password-value",
	}
	admin.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "admin"}
	admin.CurrentContext = "c"
	adminBytes, err := clientcmd.Write(*admin)
	require.NoError(t, err)

	tests := []struct {
		name       string
		in         string
		want       []string
		wantAbsent []string
	}{
		{name: "token", in: string(withToken), want: []string{"token: " + Redacted, "server: https://m:6443", "certificate-authority-data"}, wantAbsent: []string{"secret-token-value"}},
		{name: "client key and password", in: string(adminBytes),
			want:       []string{"password: " + Redacted, "client-certificate-data"},
			wantAbsent: []string{"secret-key-value", base64.StdEncoding.EncodeToString([]byte("secret-key-value")), "secret-password-value"}},
		{name: "unparsable, redacted whole", in: "{not: [a kubeconfig secret-token-value", want: []string{Redacted}, wantAbsent: []string{"secret-token-value"}},
		{name: "empty stays empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := redactKubeconfig(tt.in)
			for _, w := range tt.want {
				assert.Contains(t, out, w)
			}
			for _, a := range tt.wantAbsent {
				assert.NotContains(t, out, a)
			}
			if tt.in == "" {
				assert.Empty(t, out)
			}
		})
	}
}

func TestServiceAccountOf(t *testing.T) {
	tok := fakeToken(t, "fedmesh-system", "fedmesh", "uid-1")
	parts := strings.Split(tok, ".")
	tests := []struct {
		name  string
		token string
		want  serviceAccount
		ok    bool
	}{
		{name: "service account token", token: tok, want: serviceAccount{Issuer: "https://member.example", Namespace: "fedmesh-system", Name: "fedmesh", UID: "uid-1"}, ok: true},
		{name: "padded payload", token: parts[0] + "." + parts[1] + "==." + parts[2], want: serviceAccount{Issuer: "https://member.example", Namespace: "fedmesh-system", Name: "fedmesh", UID: "uid-1"}, ok: true},
		{name: "opaque token", token: "abcdef.0123456789abcdef"},
		{name: "empty", token: ""},
		{name: "not base64", token: "a.%%%.c"},
		{name: "JWT of something else", token: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := serviceAccountOf(tt.token)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSameMember(t *testing.T) {
	kc := func(server, token string) string {
		b, err := buildKubeconfig("c", endpoint{Server: server}, token)
		require.NoError(t, err)
		return string(b)
	}
	tok := fakeToken(t, "fedmesh-system", "fedmesh", "uid-1")
	cluster := func(kubeconfig string) *v1alpha1.Cluster {
		return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.ClusterSpec{Kubeconfig: kubeconfig}}
	}
	tests := []struct {
		name    string
		cluster *v1alpha1.Cluster
		saUID   string
		servers []string
		want    bool
	}{
		{name: "token of the member's ServiceAccount, other address", cluster: cluster(kc("https://0.0.0.0:6443", tok)), saUID: "uid-1", servers: []string{"https://10.0.0.1:6443"}, want: true},
		{name: "same server", cluster: cluster(kc("https://10.0.0.1:6443", "opaque")), servers: []string{"https://10.0.0.1:6443"}, want: true},
		{name: "same server, case and slash aside", cluster: cluster(kc("https://Member:6443/", "opaque")), servers: []string{"https://member:6443"}, want: true},
		{name: "any of the servers", cluster: cluster(kc("https://10.0.0.1:6443", "opaque")), servers: []string{"https://0.0.0.0:6443", "https://10.0.0.1:6443"}, want: true},
		{name: "ServiceAccount re-created, same server", cluster: cluster(kc("https://10.0.0.1:6443", tok)), saUID: "uid-2", servers: []string{"https://10.0.0.1:6443"}, want: true},
		{name: "another member's token and server", cluster: cluster(kc("https://10.0.0.2:6443", tok)), saUID: "uid-2", servers: []string{"https://10.0.0.1:6443"}},
		{name: "member without ServiceAccount, other server", cluster: cluster(kc("https://10.0.0.2:6443", tok)), servers: []string{"https://10.0.0.1:6443"}},
		{name: "unparsable kubeconfig", cluster: cluster("garbage: ["), servers: []string{"https://10.0.0.1:6443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, sameMember(tt.cluster, tt.saUID, tt.servers...))
		})
	}
}

func TestApplyConfig(t *testing.T) {
	tests := []struct {
		name string
		spec v1alpha1.ClusterSpec
		want string
	}{
		{name: "defaults left to the server", spec: v1alpha1.ClusterSpec{GatewayHost: "10.0.0.1", Kubeconfig: "kc"},
			want: `{"kind":"Cluster","apiVersion":"flomesh.io/v1alpha1","metadata":{"name":"c"},"spec":{"gatewayHost":"10.0.0.1","kubeconfig":"kc"}}`},
		{name: "every field", spec: v1alpha1.ClusterSpec{Region: "r", Zone: "z", Group: "g", GatewayHost: "h", GatewayPort: 81, Kubeconfig: "kc"},
			want: `{"kind":"Cluster","apiVersion":"flomesh.io/v1alpha1","metadata":{"name":"c"},"spec":{"region":"r","zone":"z","group":"g","gatewayHost":"h","gatewayPort":81,"kubeconfig":"kc"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(applyConfig("c", tt.spec))
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(b))
		})
	}
}

func TestKeyOf(t *testing.T) {
	assert.Equal(t, "default/default/default/c", keyOf("c", v1alpha1.ClusterSpec{}))
	assert.Equal(t, "r/default/g/c", keyOf("c", v1alpha1.ClusterSpec{Region: "r", Group: "g"}))
}
