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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

var testCA = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

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

			back, err := endpointOf(string(b))
			require.NoError(t, err)
			assert.Equal(t, tt.ep, back)
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

func TestSameMember(t *testing.T) {
	kc := func(server string) string {
		b, err := buildKubeconfig("c", endpoint{Server: server}, "opaque")
		require.NoError(t, err)
		return string(b)
	}
	inline := func(kubeconfig string) *v1alpha1.Cluster {
		return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.ClusterSpec{Kubeconfig: kubeconfig}}
	}
	joined := func(uid string) *v1alpha1.Cluster {
		return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: map[string]string{MemberUIDAnnotation: uid}},
			Spec: v1alpha1.ClusterSpec{CredentialsSecretRef: &v1alpha1.CredentialsSecretReference{Name: "c"}}}
	}
	tests := []struct {
		name      string
		cluster   *v1alpha1.Cluster
		memberUID string
		servers   []string
		want      bool
	}{
		{name: "recorded UID, other address", cluster: joined("uid-1"), memberUID: "uid-1", servers: []string{"https://10.0.0.1:6443"}, want: true},
		{name: "recorded UID of another member", cluster: joined("uid-1"), memberUID: "uid-2", servers: []string{"https://10.0.0.1:6443"}},
		{name: "recorded UID wins over a matching server", cluster: func() *v1alpha1.Cluster {
			c := inline(kc("https://10.0.0.1:6443"))
			c.Annotations = map[string]string{MemberUIDAnnotation: "uid-1"}
			return c
		}(), memberUID: "uid-2", servers: []string{"https://10.0.0.1:6443"}},
		{name: "no UID, same server", cluster: inline(kc("https://10.0.0.1:6443")), memberUID: "uid-1", servers: []string{"https://10.0.0.1:6443"}, want: true},
		{name: "no UID, same server, case and slash aside", cluster: inline(kc("https://Member:6443/")), servers: []string{"https://member:6443"}, want: true},
		{name: "no UID, any of the servers", cluster: inline(kc("https://10.0.0.1:6443")), servers: []string{"https://0.0.0.0:6443", "https://10.0.0.1:6443"}, want: true},
		{name: "no UID, other server", cluster: inline(kc("https://10.0.0.2:6443")), servers: []string{"https://10.0.0.1:6443"}},
		{name: "unparsable kubeconfig", cluster: inline("garbage: ["), servers: []string{"https://10.0.0.1:6443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, sameMember(tt.cluster, tt.memberUID, tt.servers...))
		})
	}
}

func TestApplyConfig(t *testing.T) {
	tests := []struct {
		name      string
		spec      v1alpha1.ClusterSpec
		memberUID string
		want      string
	}{
		{name: "defaults left to the server", spec: v1alpha1.ClusterSpec{GatewayHost: "10.0.0.1", Kubeconfig: "kc"},
			want: `{"kind":"Cluster","apiVersion":"flomesh.io/v1alpha1","metadata":{"name":"c"},"spec":{"gatewayHost":"10.0.0.1","kubeconfig":"kc"}}`},
		{name: "every field", spec: v1alpha1.ClusterSpec{Region: "r", Zone: "z", Group: "g", GatewayHost: "h", GatewayPort: 81, Kubeconfig: "kc"},
			want: `{"kind":"Cluster","apiVersion":"flomesh.io/v1alpha1","metadata":{"name":"c"},"spec":{"region":"r","zone":"z","group":"g","gatewayHost":"h","gatewayPort":81,"kubeconfig":"kc"}}`},
		{name: "credentials in a Secret, member recorded", memberUID: "uid-1",
			spec: v1alpha1.ClusterSpec{GatewayHost: "h", CredentialsSecretRef: &v1alpha1.CredentialsSecretReference{Name: "c"}},
			want: `{"kind":"Cluster","apiVersion":"flomesh.io/v1alpha1","metadata":{"name":"c","annotations":{"flomesh.io/member-uid":"uid-1"}},` +
				`"spec":{"gatewayHost":"h","credentialsSecretRef":{"name":"c"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(applyConfig("c", tt.spec, tt.memberUID))
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(b))
		})
	}
}

func TestKeyOf(t *testing.T) {
	assert.Equal(t, "default/default/default/c", keyOf("c", v1alpha1.ClusterSpec{}))
	assert.Equal(t, "r/default/g/c", keyOf("c", v1alpha1.ClusterSpec{Region: "r", Group: "g"}))
}
