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

package validation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

// testToken is a bearer token that must never appear in an error.
const testToken = "sha256~Zm9vYmFyLXNlY3JldC10b2tlbi12YWx1ZQ"

// want is one expected error: its type and the path of its field.
type want struct {
	Type  field.ErrorType
	Field string
}

func errs(ws ...want) []want { return ws }

func summarize(list field.ErrorList) []want {
	got := make([]want, 0, len(list))
	for _, e := range list {
		got = append(got, want{Type: e.Type, Field: e.Field})
	}
	sort.Slice(got, func(i, j int) bool {
		if got[i].Field != got[j].Field {
			return got[i].Field < got[j].Field
		}
		return got[i].Type < got[j].Type
	})
	return got
}

// assertErrors checks that list holds exactly the wanted errors, in any
// order, and prints the full errors when it does not.
func assertErrors(t *testing.T, wanted []want, list field.ErrorList) {
	t.Helper()
	sorted := make([]want, len(wanted))
	copy(sorted, wanted)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Field != sorted[j].Field {
			return sorted[i].Field < sorted[j].Field
		}
		return sorted[i].Type < sorted[j].Type
	})
	assert.Equal(t, sorted, summarize(list), "errors: %v", list)
}

var (
	testCertOnce         sync.Once
	testCertPEM, testKey []byte
)

// testCertAndKey returns a self-signed client certificate and its key, so
// the kubeconfigs of the tests look like real ones.
func testCertAndKey(t testing.TB) (certPEM, keyPEM []byte) {
	testCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "fedmesh", Organization: []string{"system:masters"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			panic(err)
		}
		testCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		testKey = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	})
	return testCertPEM, testKey
}

// testKubeconfigObject is a kubeconfig with client certificate credentials
// for a member at 192.168.1.110:6443.
func testKubeconfigObject(t testing.TB) *clientcmdapi.Config {
	certPEM, keyPEM := testCertAndKey(t)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["member"] = &clientcmdapi.Cluster{
		Server:                   "https://192.168.1.110:6443",
		CertificateAuthorityData: certPEM,
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM,
		ClientKeyData:         keyPEM,
	}
	cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "member", AuthInfo: "admin"}
	cfg.CurrentContext = "member"
	return cfg
}

// testKubeconfig serializes the test kubeconfig after mutate changes it.
func testKubeconfig(t testing.TB, mutate func(*clientcmdapi.Config)) string {
	t.Helper()
	cfg := testKubeconfigObject(t)
	if mutate != nil {
		mutate(cfg)
	}
	data, err := clientcmd.Write(*cfg)
	require.NoError(t, err)
	return string(data)
}

// withUser replaces the credentials of the current user.
func withUser(user *clientcmdapi.AuthInfo) func(*clientcmdapi.Config) {
	return func(cfg *clientcmdapi.Config) { cfg.AuthInfos["admin"] = user }
}

func tokenKubeconfig(t testing.TB) string {
	return testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Token: testToken}))
}

func TestParseClusterKey(t *testing.T) {
	region, zone, group, name, err := ParseClusterKey("us-east/az-1/prod/cluster-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"us-east", "az-1", "prod", "cluster-1"}, []string{region, zone, group, name})

	for key, detail := range map[string]string{
		"":                                "must have the form region/zone/group/name",
		"default/default/cluster-1":       "must have the form region/zone/group/name (4 parts), got 3",
		"a/b/c/d/e":                       "(4 parts), got 5",
		"default//default/cluster-1":      "zone must not be empty",
		"default/default/default/Cluster": `name "Cluster": a lowercase RFC 1123 label`,
		"Default/default/default/c-1":     `region "Default"`,
	} {
		_, _, _, _, err := ParseClusterKey(key)
		if assert.Error(t, err, key) {
			assert.Contains(t, err.Error(), detail, key)
		}
	}
}

func TestValidateClusterKey(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		key  string
		want []want
	}{
		{key: "default/default/default/cluster-1"},
		{key: "us-east-1/a/b0/c"},
		{key: "", want: errs(want{field.ErrorTypeRequired, "key"})},
		{key: "cluster-1", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/cluster-1", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/cluster-1/", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "/default/default/cluster-1", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/Cluster-1", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/cluster_1", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/-cluster", want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/" + long, want: errs(want{field.ErrorTypeInvalid, "key"})},
		{key: "default/default/default/cluster 1", want: errs(want{field.ErrorTypeInvalid, "key"})},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			assertErrors(t, tc.want, ValidateClusterKey(tc.key, field.NewPath("key")))
		})
	}
}

func TestValidateClusterKeyMessage(t *testing.T) {
	list := ValidateClusterKey("default/default/cluster-1", field.NewPath("spec", "targets").Index(1).Child("clusterKey"))
	require.Len(t, list, 1)
	assert.Equal(t,
		`spec.targets[1].clusterKey: Invalid value: "default/default/cluster-1": must have the form region/zone/group/name (4 parts), got 3`,
		list[0].Error())
}

func validCluster(t testing.TB) *flomesh.Cluster {
	return &flomesh.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-1", ResourceVersion: "1"},
		Spec: flomesh.ClusterSpec{
			Region:      "default",
			Zone:        "default",
			Group:       "default",
			GatewayHost: "192.168.1.110",
			GatewayPort: 81,
			Kubeconfig:  testKubeconfig(t, nil),
		},
	}
}

func TestValidateCluster(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*flomesh.Cluster)
		want   []want
	}{
		{name: "valid", mutate: func(*flomesh.Cluster) {}},
		{name: "valid with token kubeconfig", mutate: func(c *flomesh.Cluster) { c.Spec.Kubeconfig = tokenKubeconfig(t) }},
		{name: "valid custom key parts", mutate: func(c *flomesh.Cluster) {
			c.Spec.Region, c.Spec.Zone, c.Spec.Group = "us-east-1", "az-2", "prod"
		}},
		{name: "valid generated name", mutate: func(c *flomesh.Cluster) { c.Name, c.GenerateName = "member-x7k2p", "member-" }},

		{name: "name missing", mutate: func(c *flomesh.Cluster) { c.Name = "" },
			want: errs(want{field.ErrorTypeRequired, "metadata.name"})},
		{name: "name not a label", mutate: func(c *flomesh.Cluster) { c.Name = "cluster.one" },
			want: errs(want{field.ErrorTypeInvalid, "metadata.name"})},
		{name: "namespace set", mutate: func(c *flomesh.Cluster) { c.Namespace = "default" },
			want: errs(want{field.ErrorTypeForbidden, "metadata.namespace"})},

		{name: "region empty", mutate: func(c *flomesh.Cluster) { c.Spec.Region = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.region"})},
		{name: "zone not a label", mutate: func(c *flomesh.Cluster) { c.Spec.Zone = "Zone_A" },
			want: errs(want{field.ErrorTypeInvalid, "spec.zone"})},
		{name: "group with slash", mutate: func(c *flomesh.Cluster) { c.Spec.Group = "a/b" },
			want: errs(want{field.ErrorTypeInvalid, "spec.group"})},

		{name: "gateway host DNS name", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "gw.cluster-1.example.com" }},
		{name: "gateway host IPv6", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "fd00::10" }},
		{name: "gateway host missing", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.gatewayHost"})},
		{name: "gateway host with port", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "192.168.1.110:81" },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayHost"})},
		{name: "gateway host URL", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "http://gw.example.com" },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayHost"})},
		{name: "gateway host bracketed IPv6", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayHost = "[fd00::10]" },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayHost"})},

		{name: "gateway port 1", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayPort = 1 }},
		{name: "gateway port 65535", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayPort = 65535 }},
		{name: "gateway port 0", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayPort = 0 },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayPort"})},
		{name: "gateway port 65536", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayPort = 65536 },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayPort"})},
		{name: "gateway port negative", mutate: func(c *flomesh.Cluster) { c.Spec.GatewayPort = -80 },
			want: errs(want{field.ErrorTypeInvalid, "spec.gatewayPort"})},

		{name: "kubeconfig missing", mutate: func(c *flomesh.Cluster) { c.Spec.Kubeconfig = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.kubeconfig"})},
		{name: "kubeconfig garbage", mutate: func(c *flomesh.Cluster) { c.Spec.Kubeconfig = "{{ not yaml" },
			want: errs(want{field.ErrorTypeInvalid, "spec.kubeconfig"})},

		{name: "several errors", mutate: func(c *flomesh.Cluster) {
			c.Spec.GatewayPort = 0
			c.Spec.GatewayHost = ""
			c.Spec.Kubeconfig = ""
		}, want: errs(
			want{field.ErrorTypeInvalid, "spec.gatewayPort"},
			want{field.ErrorTypeRequired, "spec.gatewayHost"},
			want{field.ErrorTypeRequired, "spec.kubeconfig"},
		)},
		{name: "credentials in a Secret", mutate: func(c *flomesh.Cluster) {
			c.Spec.Kubeconfig = ""
			c.Spec.CredentialsSecretRef = &flomesh.CredentialsSecretReference{Name: "cluster-1"}
		}},
		{name: "credentials in a Secret and inline", mutate: func(c *flomesh.Cluster) {
			c.Spec.CredentialsSecretRef = &flomesh.CredentialsSecretReference{Name: "cluster-1"}
		}, want: errs(want{field.ErrorTypeForbidden, "spec.credentialsSecretRef"})},
		{name: "bad Secret name", mutate: func(c *flomesh.Cluster) {
			c.Spec.Kubeconfig = ""
			c.Spec.CredentialsSecretRef = &flomesh.CredentialsSecretReference{Name: "../etc"}
		}, want: errs(want{field.ErrorTypeInvalid, "spec.credentialsSecretRef.name"})},
		{name: "empty Secret name", mutate: func(c *flomesh.Cluster) {
			c.Spec.Kubeconfig = ""
			c.Spec.CredentialsSecretRef = &flomesh.CredentialsSecretReference{}
		}, want: errs(want{field.ErrorTypeInvalid, "spec.credentialsSecretRef.name"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validCluster(t)
			tc.mutate(c)
			assertErrors(t, tc.want, ValidateCluster(c, KubeconfigPolicy{}))
		})
	}
}

func TestValidateKubeconfig(t *testing.T) {
	const (
		kc      = "spec.kubeconfig"
		cluster = kc + ".clusters[member].cluster"
		user    = kc + ".users[admin].user"
		context = kc + ".contexts[member].context"
	)
	type want struct {
		typ    field.ErrorType
		field  string
		detail string
	}
	tests := []struct {
		name       string
		kubeconfig string
		policy     KubeconfigPolicy
		want       []want // empty when valid
	}{
		{name: "client certificate and key data", kubeconfig: testKubeconfig(t, nil)},
		{name: "token", kubeconfig: tokenKubeconfig(t)},
		{name: "server without scheme is https", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "192.168.1.110:6443"
		})},
		{name: "server with a trailing slash", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://192.168.1.110:6443/"
		})},
		{name: "tls server name", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].TLSServerName = "member.example.com"
		})},
		{name: "other contexts may be broken", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Contexts["broken"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: "nobody"}
			cfg.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "id"}}
		})},

		// Code and files: never, whatever the policy.
		{name: "exec plugin", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1", Command: "id"}})), policy: allowAll,
			want: []want{{field.ErrorTypeForbidden, user + ".exec", "runs no command"}}},
		{name: "auth provider", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{
			AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "oidc"}})), policy: allowAll,
			want: []want{{field.ErrorTypeForbidden, user + ".auth-provider", "runs no command"}}},
		{name: "exec next to a token", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Token: testToken,
			Exec: &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "id"}})),
			want: []want{{field.ErrorTypeForbidden, user + ".exec", ""}}},
		{name: "token file", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{
			TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"})), policy: allowAll,
			want: []want{{field.ErrorTypeForbidden, user + ".tokenFile", "reads no file"}}},
		{name: "client certificate and key files", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{
			ClientCertificate: "/etc/fedmesh/member.crt", ClientKey: "/etc/fedmesh/member.key"})),
			want: []want{
				{field.ErrorTypeForbidden, user + ".client-certificate", "reads no file"},
				{field.ErrorTypeForbidden, user + ".client-key", "reads no file"},
			}},
		{name: "certificate authority file", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].CertificateAuthority = "/etc/kubernetes/pki/ca.crt"
		}), policy: allowAll, want: []want{{field.ErrorTypeForbidden, cluster + ".certificate-authority", "reads no file"}}},
		{name: "a token of blanks", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Token: " \n"})),
			want: []want{{field.ErrorTypeInvalid, user + ".token", "one word of printable ASCII"}}},
		{name: "a token with a line break", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Token: testToken + "\r\nX-Other: 1"})),
			want: []want{{field.ErrorTypeInvalid, user + ".token", "one word of printable ASCII"}}},
		{name: "basic auth", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Username: "admin", Password: "s3cret"})),
			want: []want{
				{field.ErrorTypeForbidden, user + ".username", "basic authentication"},
				{field.ErrorTypeForbidden, user + ".password", "basic authentication"},
			}},
		{name: "impersonation", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			u := cfg.AuthInfos["admin"]
			u.Impersonate, u.ImpersonateUID = "system:admin", "0"
			u.ImpersonateGroups = []string{"system:masters"}
			u.ImpersonateUserExtra = map[string][]string{"scopes": {"all"}}
		}), policy: allowAll, want: []want{
			{field.ErrorTypeForbidden, user + ".act-as", "acts only as"},
			{field.ErrorTypeForbidden, user + ".act-as-uid", ""},
			{field.ErrorTypeForbidden, user + ".act-as-groups", ""},
			{field.ErrorTypeForbidden, user + ".act-as-user-extra", ""},
		}},

		// Unsafe transports: only behind their opt-in.
		{name: "plain http", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "http://192.168.1.110:8080"
		}), want: []want{{field.ErrorTypeForbidden, cluster + ".server", "--allow-plain-http-members"}}},
		{name: "plain http allowed", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "http://192.168.1.110:8080"
		}), policy: KubeconfigPolicy{AllowPlainHTTP: true}},
		{name: "insecure", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].CertificateAuthorityData = nil
			cfg.Clusters["member"].InsecureSkipTLSVerify = true
		}), want: []want{{field.ErrorTypeForbidden, cluster + ".insecure-skip-tls-verify", "--allow-insecure-member-tls"}}},
		{name: "insecure allowed", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].CertificateAuthorityData = nil
			cfg.Clusters["member"].InsecureSkipTLSVerify = true
		}), policy: KubeconfigPolicy{AllowInsecureTLS: true}},
		{name: "insecure allowed, with a CA", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].InsecureSkipTLSVerify = true
		}), policy: KubeconfigPolicy{AllowInsecureTLS: true},
			want: []want{{field.ErrorTypeInvalid, cluster + ".insecure-skip-tls-verify", "not be set together with certificate-authority-data"}}},
		{name: "proxy", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].ProxyURL = "http://10.0.0.1:3128"
		}), want: []want{{field.ErrorTypeForbidden, cluster + ".proxy-url", "--allow-member-proxy"}}},
		{name: "proxy allowed", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].ProxyURL = "http://10.0.0.1:3128"
		}), policy: KubeconfigPolicy{AllowProxy: true}},
		{name: "proxy allowed, not a URL", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].ProxyURL = "file:///etc/passwd"
		}), policy: KubeconfigPolicy{AllowProxy: true},
			want: []want{{field.ErrorTypeInvalid, cluster + ".proxy-url", "not an http, https or socks5 URL"}}},
		{name: "server path", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://gw.example.com/members/1"
		}), want: []want{{field.ErrorTypeForbidden, cluster + ".server", "must not have a path"}}},
		{name: "server path allowed", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://gw.example.com/members/1"
		}), policy: KubeconfigPolicy{AllowServerPath: true}},
		{name: "server with user info", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://admin:s3cret@192.168.1.110:6443"
		}), policy: allowAll, want: []want{{field.ErrorTypeInvalid, cluster + ".server", "must not carry a user name"}}},
		{name: "server with a query", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://192.168.1.110:6443?x=1"
		}), policy: allowAll, want: []want{{field.ErrorTypeInvalid, cluster + ".server", "query or a fragment"}}},
		{name: "server with a fragment", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://192.168.1.110:6443#x"
		}), policy: allowAll, want: []want{{field.ErrorTypeInvalid, cluster + ".server", "query or a fragment"}}},
		{name: "server not http", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "ftp://192.168.1.110"
		}), policy: allowAll, want: []want{{field.ErrorTypeInvalid, cluster + ".server", "not an https URL with a host"}}},
		{name: "server without host", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = "https://"
		}), want: []want{{field.ErrorTypeInvalid, cluster + ".server", "not an https URL with a host"}}},

		// Structure.
		{name: "empty", kubeconfig: "", want: []want{{field.ErrorTypeRequired, kc, ""}}},
		{name: "blank", kubeconfig: "  \n\t\n", want: []want{{field.ErrorTypeRequired, kc, ""}}},
		{name: "garbage", kubeconfig: "{{ this is: not [yaml", want: []want{{field.ErrorTypeInvalid, kc, "does not parse: "}}},
		{name: "a token instead of a kubeconfig", kubeconfig: testToken, want: []want{{field.ErrorTypeInvalid, kc, "does not parse: "}}},
		{name: "wrong kind", kubeconfig: "apiVersion: v1\nkind: Pod\n", want: []want{{field.ErrorTypeInvalid, kc, "does not parse: "}}},
		{name: "no current-context", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) { cfg.CurrentContext = "" }),
			want: []want{{field.ErrorTypeRequired, kc + ".current-context", ""}}},
		{name: "current-context not defined", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) { cfg.CurrentContext = "x" }),
			want: []want{{field.ErrorTypeInvalid, kc + ".current-context", `context "x", which is not defined`}}},
		{name: "context names no cluster", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Contexts["member"].Cluster = ""
		}), want: []want{{field.ErrorTypeRequired, context + ".cluster", ""}}},
		{name: "missing cluster", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			delete(cfg.Clusters, "member")
		}), want: []want{{field.ErrorTypeInvalid, context + ".cluster", `cluster "member", which is not defined`}}},
		{name: "empty server", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = ""
		}), want: []want{{field.ErrorTypeRequired, cluster + ".server", ""}}},
		{name: "context names no user", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Contexts["member"].AuthInfo = ""
		}), want: []want{{field.ErrorTypeRequired, context + ".user", ""}}},
		{name: "missing user", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			delete(cfg.AuthInfos, "admin")
		}), want: []want{{field.ErrorTypeInvalid, context + ".user", `user "admin", which is not defined`}}},
		{name: "no credentials", kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{})),
			want: []want{{field.ErrorTypeRequired, user, "a token, or client-certificate-data and client-key-data"}}},
		{name: "certificate without key", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["admin"].ClientKeyData = nil
		}), want: []want{{field.ErrorTypeRequired, user + ".client-key-data", ""}}},
		{name: "key without certificate", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["admin"].ClientCertificateData = nil
		}), want: []want{{field.ErrorTypeRequired, user + ".client-certificate-data", ""}}},
		{name: "no server and no credentials", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = ""
			cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{}
		}), want: []want{{field.ErrorTypeRequired, cluster + ".server", ""}, {field.ErrorTypeRequired, user, ""}}},
		{name: "a name with control characters is escaped", kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["\x1b[31mred"] = &clientcmdapi.AuthInfo{TokenFile: "/t"}
			cfg.Contexts["member"].AuthInfo = "\x1b[31mred"
		}), want: []want{{field.ErrorTypeForbidden, kc + `.users[\x1b[31mred].user.tokenFile`, ""}}},
	}
	path := field.NewPath("spec", "kubeconfig")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds, list := ParseKubeconfig(tc.kubeconfig, tc.policy, path)
			assert.Equal(t, list, ValidateKubeconfig(tc.kubeconfig, tc.policy, path))
			if len(tc.want) == 0 {
				assert.Empty(t, list)
				require.NotNil(t, creds)
				assert.NotEmpty(t, creds.Server)
				return
			}
			assert.Nil(t, creds)
			require.Len(t, list, len(tc.want), "errors: %v", list)
			for i, e := range list {
				assert.Equal(t, tc.want[i].typ, e.Type, "error %d: %v", i, e)
				assert.Equal(t, tc.want[i].field, e.Field, "error %d: %v", i, e)
				assert.Contains(t, e.Detail, tc.want[i].detail)
				// The value is never part of the error.
				if e.Type == field.ErrorTypeInvalid {
					assert.Equal(t, field.OmitValueType{}, e.BadValue)
				}
			}
		})
	}
}

// allowAll opts in to every unsafe transport, to show that what stays
// refused is refused whatever the flags.
var allowAll = KubeconfigPolicy{AllowPlainHTTP: true, AllowInsecureTLS: true, AllowProxy: true, AllowServerPath: true}

// The credentials are exactly the kubeconfig's data, the server
// normalised.
func TestParseKubeconfigCredentials(t *testing.T) {
	certPEM, keyPEM := testCertAndKey(t)
	creds, errs := ParseKubeconfig(testKubeconfig(t, func(cfg *clientcmdapi.Config) {
		cfg.Clusters["member"].Server = "192.168.1.110:6443/"
		cfg.Clusters["member"].TLSServerName = "member"
		cfg.AuthInfos["admin"].Token = testToken
	}), KubeconfigPolicy{}, field.NewPath("spec", "kubeconfig"))
	require.Empty(t, errs)
	assert.Equal(t, &MemberCredentials{
		Server: "https://192.168.1.110:6443", CAData: certPEM, TLSServerName: "member",
		Token: testToken, ClientCertData: certPEM, ClientKeyData: keyPEM,
	}, creds)
}

// TestKubeconfigErrorsDoNotLeakSecrets checks that a kubeconfig, which is
// a credential, is never quoted back, including in the parser's messages
// that quote values.
func TestKubeconfigErrorsDoNotLeakSecrets(t *testing.T) {
	_, keyPEM := testCertAndKey(t)
	keyLine := strings.Split(string(keyPEM), "\n")[1]
	tests := map[string]struct {
		kubeconfig string
		// rawLeaks is true when clientcmd.Load's own error quotes the
		// secret, which proves the case exercises the scrubbing.
		rawLeaks bool
	}{
		"no server": {kubeconfig: testKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.Clusters["member"].Server = ""
			cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: testToken}
		})},
		"token and basic auth": {kubeconfig: testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{
			Token: testToken, Username: "admin", Password: testToken}))},
		"the token alone":            {kubeconfig: testToken},
		"the token in YAML":          {kubeconfig: "token: " + testToken + "\n"},
		"broken YAML":                {kubeconfig: "users:\n- name: u\n  user:\n    token: [" + testToken + "\n"},
		"token as apiVersion":        {kubeconfig: "apiVersion: " + testToken + "\nkind: Config\n", rawLeaks: true},
		"token as kind":              {kubeconfig: "apiVersion: v1\nkind: " + testToken + "\n", rawLeaks: true},
		"quoted token as kind":       {kubeconfig: "apiVersion: v1\nkind: \"" + testToken + "\"\n", rawLeaks: true},
		"escaped token as kind":      {kubeconfig: "apiVersion: v1\nkind: \"\\x41" + testToken + "\"\n", rawLeaks: true},
		"token in a kind phrase":     {kubeconfig: "apiVersion: v1\nkind: my token is " + testToken + "\n", rawLeaks: true},
		"token with a quote as kind": {kubeconfig: "apiVersion: v1\nkind: '" + testToken + `"x'` + "\n", rawLeaks: true},
		"token in a long kind": {kubeconfig: "apiVersion: v1\nkind: " + strings.Repeat("k", 5000) + testToken + "\n",
			rawLeaks: true},
		"key data as kind": {kubeconfig: "apiVersion: v1\nkind: " + keyLine + "\n", rawLeaks: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			secret := testToken
			if strings.Contains(tc.kubeconfig, keyLine) {
				secret = keyLine
			}
			if tc.rawLeaks {
				_, err := clientcmd.Load([]byte(tc.kubeconfig))
				require.Error(t, err)
				require.Contains(t, err.Error(), strings.TrimPrefix(secret, "sha256~"),
					"the case no longer exercises scrubbing")
			}
			list := ValidateKubeconfig(tc.kubeconfig, KubeconfigPolicy{}, field.NewPath("spec", "kubeconfig"))
			require.NotEmpty(t, list)
			status := apierrors.NewInvalid(flomesh.Kind("Cluster"), "cluster-1", list)
			for _, text := range []string{list.ToAggregate().Error(), status.Error(), fmt.Sprintf("%#v", status.ErrStatus)} {
				assert.NotContains(t, text, secret)
				// Not even a recognisable part of it.
				assert.NotContains(t, text, secret[len(secret)-12:])
			}
		})
	}
}

func TestRedact(t *testing.T) {
	// The parser's wording and the kubeconfig's own field names survive.
	msg := `json: cannot unmarshal string into Go struct field Config.clusters of type []v1.NamedCluster`
	assert.Equal(t, msg, redact(msg, "apiVersion: v1\nkind: Config\nclusters: definitely-not-a-list\n"))
	assert.Equal(t, `no kind "<redacted>" is registered`, redact(`no kind "abcdefgh" is registered`, "kind: abcdefgh"))
	// Overlapping candidates collapse into one marker.
	assert.Equal(t, `x <redacted> y`, redact(`x abcdefghij y`, "abcdefgh defghij"))
}

func validPolicy() *flomesh.GlobalTrafficPolicy {
	return &flomesh.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: "httpbin", ResourceVersion: "1"},
		Spec: flomesh.GlobalTrafficPolicySpec{
			LbType: flomesh.FailOverLbType,
			Targets: []flomesh.TrafficTarget{
				{ClusterKey: "default/default/default/cluster-1"},
				{ClusterKey: "default/default/default/cluster-3"},
			},
		},
	}
}

// targets returns n targets of distinct cluster keys.
func targets(n int) []flomesh.TrafficTarget {
	out := make([]flomesh.TrafficTarget, n)
	for i := range out {
		out[i].ClusterKey = fmt.Sprintf("default/default/default/cluster-%d", i)
	}
	return out
}

func TestValidateGlobalTrafficPolicy(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*flomesh.GlobalTrafficPolicy)
		want   []want
	}{
		{name: "failover", mutate: func(*flomesh.GlobalTrafficPolicy) {}},
		{name: "active-active", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.LbType = flomesh.ActiveActiveLbType }},
		{name: "active-active without targets", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.LbType, p.Spec.Targets = flomesh.ActiveActiveLbType, nil
		}},
		{name: "locality without targets", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.LbType, p.Spec.Targets = flomesh.LocalityLbType, nil
		}},
		{name: "active-active with weights", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.LbType = flomesh.ActiveActiveLbType
			p.Spec.Targets[0].Weight = int32Ptr(0)
			p.Spec.Targets[1].Weight = int32Ptr(100)
		}},
		{name: "failover keeps weights", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.Targets[0].Weight = int32Ptr(3)
		}},

		{name: "namespace missing", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Namespace = "" },
			want: errs(want{field.ErrorTypeRequired, "metadata.namespace"})},
		{name: "name not a label", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Name = "httpbin.v2" },
			want: errs(want{field.ErrorTypeInvalid, "metadata.name"})},

		{name: "lbType empty", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.LbType = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.lbType"})},
		{name: "lbType unknown", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.LbType = "Failover" },
			want: errs(want{field.ErrorTypeNotSupported, "spec.lbType"})},
		{name: "failover without targets", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.Targets = nil },
			want: errs(want{field.ErrorTypeRequired, "spec.targets"})},
		{name: "locality with targets", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.LbType = flomesh.LocalityLbType },
			want: errs(want{field.ErrorTypeForbidden, "spec.targets"})},

		{name: "key malformed", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.Targets[1].ClusterKey = "default/default/cluster-3"
		}, want: errs(want{field.ErrorTypeInvalid, "spec.targets[1].clusterKey"})},
		{name: "key empty", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.Targets[0].ClusterKey = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.targets[0].clusterKey"})},
		{name: "key duplicate", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.Targets = append(p.Spec.Targets, flomesh.TrafficTarget{ClusterKey: "default/default/default/cluster-1"})
		}, want: errs(want{field.ErrorTypeDuplicate, "spec.targets[2].clusterKey"})},
		{name: "weight negative", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.LbType = flomesh.ActiveActiveLbType
			p.Spec.Targets[1].Weight = int32Ptr(-1)
		}, want: errs(want{field.ErrorTypeInvalid, "spec.targets[1].weight"})},
		{name: "as many targets as allowed", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.Targets = targets(MaxPolicyTargets) }},
		{name: "one target too many, counted without being judged", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.Targets = append(targets(MaxPolicyTargets), flomesh.TrafficTarget{ClusterKey: "not a key"})
		}, want: errs(want{field.ErrorTypeTooMany, "spec.targets"})},

		{name: "grace zero withdraws at once", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.UnavailableGraceSeconds = int32Ptr(0) }},
		{name: "grace a day", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.UnavailableGraceSeconds = int32Ptr(MaxUnavailableGraceSeconds)
		}},
		{name: "grace negative", mutate: func(p *flomesh.GlobalTrafficPolicy) { p.Spec.UnavailableGraceSeconds = int32Ptr(-1) },
			want: errs(want{field.ErrorTypeInvalid, "spec.unavailableGraceSeconds"})},
		{name: "grace over a day", mutate: func(p *flomesh.GlobalTrafficPolicy) {
			p.Spec.UnavailableGraceSeconds = int32Ptr(MaxUnavailableGraceSeconds + 1)
		}, want: errs(want{field.ErrorTypeInvalid, "spec.unavailableGraceSeconds"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := validPolicy()
			tc.mutate(p)
			assertErrors(t, tc.want, ValidateGlobalTrafficPolicy(p))
		})
	}
}

func TestValidateGlobalTrafficPolicyUpdate(t *testing.T) {
	old := validPolicy()

	p := validPolicy()
	p.Spec.LbType = flomesh.ActiveActiveLbType
	assertErrors(t, nil, ValidateGlobalTrafficPolicyUpdate(p, old))

	p = validPolicy()
	p.Name = "other"
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "metadata.name"}), ValidateGlobalTrafficPolicyUpdate(p, old))

	p = validPolicy()
	p.Spec.Targets[0].ClusterKey = "cluster-1"
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "spec.targets[0].clusterKey"}), ValidateGlobalTrafficPolicyUpdate(p, old))
}

func condition(typ string) metav1.Condition {
	return metav1.Condition{
		Type:               typ,
		Status:             metav1.ConditionTrue,
		Reason:             "AsExpected",
		LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
}

func TestValidateGlobalTrafficPolicyStatusUpdate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*flomesh.GlobalTrafficPolicyStatus)
		want   []want
	}{
		{name: "valid", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {}},
		{name: "condition without reason", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) { s.Conditions[0].Reason = "" },
			want: errs(want{field.ErrorTypeRequired, "status.conditions[0].reason"})},
		{name: "condition status unknown", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) { s.Conditions[0].Status = "Maybe" },
			want: errs(want{field.ErrorTypeNotSupported, "status.conditions[0].status"})},
		{name: "condition repeated", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Conditions = append(s.Conditions, condition("Accepted"))
		}, want: errs(want{field.ErrorTypeDuplicate, "status.conditions[1]"})},
		{name: "target key malformed", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Targets[1].ClusterKey = "cluster-3"
		}, want: errs(want{field.ErrorTypeInvalid, "status.targets[1].clusterKey"})},
		{name: "target key repeated", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Targets[1].ClusterKey = s.Targets[0].ClusterKey
		}, want: errs(want{field.ErrorTypeDuplicate, "status.targets[1].clusterKey"})},
		{name: "the same consumer on another port", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[1].Cluster, s.Consumers[1].Port = s.Consumers[0].Cluster, 443
		}},
		{name: "consumer repeated", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[1].Cluster, s.Consumers[1].Port = s.Consumers[0].Cluster, s.Consumers[0].Port
		}, want: errs(want{field.ErrorTypeDuplicate, "status.consumers[1]"})},
		{name: "consumer key malformed", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[0].Cluster = "cluster-2"
		}, want: errs(want{field.ErrorTypeInvalid, "status.consumers[0].cluster"})},
		{name: "consumer port out of range", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[0].Port = 0
		}, want: errs(want{field.ErrorTypeInvalid, "status.consumers[0].port"})},
		{name: "as many consumers as allowed", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers = consumers(MaxConsumerRoutes)
		}},
		{name: "too many consumers", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers = consumers(MaxConsumerRoutes + 1)
		}, want: errs(want{field.ErrorTypeTooMany, "status.consumers"})},
		{name: "message too long", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[0].Message = strings.Repeat("é", MaxRouteMessageLength+1)
		}, want: errs(want{field.ErrorTypeTooLong, "status.consumers[0].message"})},
		{name: "too many tiers", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			for range MaxRouteTiers {
				s.Consumers[0].Tiers = append(s.Consumers[0].Tiers, s.Consumers[0].Tiers[0])
			}
		}, want: errs(want{field.ErrorTypeTooMany, "status.consumers[0].tiers"})},
		{name: "empty tier", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			s.Consumers[0].Tiers[0].Destinations = nil
		}, want: errs(want{field.ErrorTypeRequired, "status.consumers[0].tiers[0].destinations"})},
		{name: "too many destinations", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			for _, c := range consumers(MaxReportedMembers + 1) {
				s.Consumers[1].Tiers[0].Destinations = append(s.Consumers[1].Tiers[0].Destinations, flomesh.RouteDestination{Cluster: c.Cluster, Weight: 1})
			}
		}, want: errs(want{field.ErrorTypeTooMany, "status.consumers[1].tiers[0].destinations"})},
		{name: "destination repeated, malformed and of weight 0", mutate: func(s *flomesh.GlobalTrafficPolicyStatus) {
			d := &s.Consumers[1].Tiers[1].Destinations
			*d = append(*d, (*d)[0], flomesh.RouteDestination{Cluster: "a/b", Weight: 0})
		}, want: errs(
			want{field.ErrorTypeDuplicate, "status.consumers[1].tiers[1].destinations[1].cluster"},
			want{field.ErrorTypeInvalid, "status.consumers[1].tiers[1].destinations[2].weight"},
			want{field.ErrorTypeInvalid, "status.consumers[1].tiers[1].destinations[2].cluster"},
		)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validPolicy()
			p := validPolicy()
			p.Status = flomesh.GlobalTrafficPolicyStatus{
				Conditions: []metav1.Condition{condition("Accepted")},
				Targets: []flomesh.TargetStatus{
					{ClusterKey: "default/default/default/cluster-1", Known: true, Ready: true, Exported: true},
					{ClusterKey: "default/default/default/cluster-3", Message: "cluster is not registered"},
				},
				Consumers: []flomesh.ConsumerRoute{
					{Cluster: "default/default/default/cluster-1", Port: 8080, Tiers: []flomesh.RouteTier{
						{Destinations: []flomesh.RouteDestination{{Cluster: "default/default/default/cluster-1", Weight: 100}}},
					}},
					{Cluster: "default/default/default/cluster-2", Port: 8080, Tiers: []flomesh.RouteTier{
						{Destinations: []flomesh.RouteDestination{{Cluster: "default/default/default/cluster-2", Weight: 100}}},
						{Destinations: []flomesh.RouteDestination{{Cluster: "default/default/default/cluster-1", Weight: 100}}},
					}, Message: "default/default/default/cluster-3: NotExported"},
				},
			}
			tc.mutate(&p.Status)
			assertErrors(t, tc.want, ValidateGlobalTrafficPolicyStatusUpdate(p, old))
		})
	}
}

// consumers returns n routes of distinct consumers, each with no route.
func consumers(n int) []flomesh.ConsumerRoute {
	out := make([]flomesh.ConsumerRoute, n)
	for i := range out {
		out[i] = flomesh.ConsumerRoute{Cluster: fmt.Sprintf("default/default/default/cluster-%d", i), Port: 80}
	}
	return out
}

func TestValidateClusterUpdate(t *testing.T) {
	none := KubeconfigPolicy{}
	old := validCluster(t)

	c := validCluster(t)
	c.Spec.GatewayPort = 82
	assertErrors(t, nil, ValidateClusterUpdate(c, old, none))

	c = validCluster(t)
	c.Name = "cluster-2"
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "metadata.name"}), ValidateClusterUpdate(c, old, none))

	c = validCluster(t)
	c.Spec.Kubeconfig = "not a kubeconfig"
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "spec.kubeconfig"}), ValidateClusterUpdate(c, old, none))

	// A kubeconfig stored under older rules is not judged again while it
	// stays as it is, so the Cluster can still be labelled or deleted...
	execKubeconfig := testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "id"}}))
	stored := validCluster(t)
	stored.Spec.Kubeconfig = execKubeconfig
	c = stored.DeepCopy()
	c.Labels = map[string]string{"team": "a"}
	c.Spec.GatewayPort = 82
	assertErrors(t, nil, ValidateClusterUpdate(c, stored, none))
	// ...but everything else still is,
	c.Spec.GatewayPort = 0
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "spec.gatewayPort"}), ValidateClusterUpdate(c, stored, none))
	// and a changed kubeconfig must pass.
	c = stored.DeepCopy()
	c.Spec.Kubeconfig = testKubeconfig(t, withUser(&clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "id2"}}))
	assertErrors(t, errs(want{field.ErrorTypeForbidden, "spec.kubeconfig.users[admin].user.exec"}), ValidateClusterUpdate(c, stored, none))
}

func TestValidateClusterStatusUpdate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*flomesh.ClusterStatus)
		want   []want
	}{
		{name: "valid", mutate: func(*flomesh.ClusterStatus) {}},
		{name: "empty", mutate: func(s *flomesh.ClusterStatus) { *s = flomesh.ClusterStatus{} }},
		{name: "condition without type", mutate: func(s *flomesh.ClusterStatus) { s.Conditions[0].Type = "" },
			want: errs(want{field.ErrorTypeRequired, "status.conditions[0].type"})},
		{name: "condition without time", mutate: func(s *flomesh.ClusterStatus) {
			s.Conditions[0].LastTransitionTime = metav1.Time{}
		}, want: errs(want{field.ErrorTypeRequired, "status.conditions[0].lastTransitionTime"})},
		{name: "export count negative", mutate: func(s *flomesh.ClusterStatus) { s.ExportCount = -1 },
			want: errs(want{field.ErrorTypeInvalid, "status.exportCount"})},
		{name: "cluster key malformed", mutate: func(s *flomesh.ClusterStatus) { s.ClusterKey = "default/cluster-1" },
			want: errs(want{field.ErrorTypeInvalid, "status.clusterKey"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validCluster(t)
			c := validCluster(t)
			now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			c.Status = flomesh.ClusterStatus{
				Conditions:        []metav1.Condition{condition("Ready")},
				ClusterKey:        "default/default/default/cluster-1",
				KubernetesVersion: "v1.37.2",
				ExportCount:       2,
				LastHeartbeatTime: &now,
			}
			tc.mutate(&c.Status)
			assertErrors(t, tc.want, ValidateClusterStatusUpdate(c, old))
		})
	}

	// Metadata still may not change in ways an update forbids.
	old, c := validCluster(t), validCluster(t)
	c.Name = "cluster-2"
	assertErrors(t, errs(want{field.ErrorTypeInvalid, "metadata.name"}), ValidateClusterStatusUpdate(c, old))
}

func validExport() *flomesh.ServiceExport {
	return &flomesh.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: "httpbin"},
		Spec: flomesh.ServiceExportSpec{
			ServiceAccountName: "*",
			Rules: []flomesh.ServiceExportRule{
				{PortNumber: 8080, Path: "/cluster-1/httpbin-mesh", PathType: flomesh.PathTypePrefix},
			},
			LoadBalancer: flomesh.RoundRobinLoadBalancer,
		},
	}
}

func TestValidateServiceExport(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*flomesh.ServiceExport)
		want   []want
	}{
		{name: "valid", mutate: func(*flomesh.ServiceExport) {}},
		{name: "undefaulted", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.LoadBalancer = ""
			e.Spec.Rules[0].PathType = ""
		}},
		{name: "exact path, hashing, rewrite and targets", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.Rules = append(e.Spec.Rules, flomesh.ServiceExportRule{PortNumber: 9090, Path: "/metrics", PathType: flomesh.PathTypeExact})
			e.Spec.LoadBalancer = flomesh.HashingLoadBalancer
			e.Spec.PathRewrite = &flomesh.PathRewrite{From: "^/cluster-1/httpbin-mesh", To: "/"}
			e.Spec.TargetClusters = []string{"default/default/default/cluster-2", "default/default/default/cluster-3"}
		}},

		{name: "namespace missing", mutate: func(e *flomesh.ServiceExport) { e.Namespace = "" },
			want: errs(want{field.ErrorTypeRequired, "metadata.namespace"})},
		{name: "port 0", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].PortNumber = 0 },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].portNumber"})},
		{name: "port too large", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].PortNumber = 70000 },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].portNumber"})},
		{name: "no path", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "" },
			want: errs(want{field.ErrorTypeRequired, "spec.rules[0].path"})},
		{name: "relative path", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "cluster-1/httpbin" },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].path"})},
		{name: "a path an Ingress refuses: //", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "/a//b" },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].path"})},
		{name: "a path an Ingress refuses: /../", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "/a/../kube" },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].path"})},
		{name: "a path an Ingress refuses: %2F", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "/a%2Fb" },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].path"})},
		{name: "a path an Ingress refuses: trailing /.", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "/a/." },
			want: errs(want{field.ErrorTypeInvalid, "spec.rules[0].path"})},
		{name: "a dot inside a segment is a path like any", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = "/v1.2/a.b" }},
		{name: "one port at two paths", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.Rules = append(e.Spec.Rules, flomesh.ServiceExportRule{PortNumber: 9090, Path: "/metrics"},
				flomesh.ServiceExportRule{PortNumber: 8080, Path: "/other"})
		}, want: errs(want{field.ErrorTypeInvalid, "spec.rules[2].path"})},
		{name: "one port twice at the same path is redundant", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.Rules = append(e.Spec.Rules, e.Spec.Rules[0])
		}},
		{name: "path type unknown", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].PathType = "Regex" },
			want: errs(want{field.ErrorTypeNotSupported, "spec.rules[0].pathType"})},
		{name: "load balancer unknown", mutate: func(e *flomesh.ServiceExport) { e.Spec.LoadBalancer = "Random" },
			want: errs(want{field.ErrorTypeNotSupported, "spec.loadBalancer"})},
		{name: "rewrite without from", mutate: func(e *flomesh.ServiceExport) { e.Spec.PathRewrite = &flomesh.PathRewrite{To: "/"} },
			want: errs(want{field.ErrorTypeRequired, "spec.pathRewrite.from"})},
		{name: "target key malformed", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.TargetClusters = []string{"default/default/default/cluster-2", "cluster-3"}
		}, want: errs(want{field.ErrorTypeInvalid, "spec.targetClusters[1]"})},
		{name: "target key repeated", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.TargetClusters = []string{"default/default/default/cluster-2", "default/default/default/cluster-2"}
		}, want: errs(want{field.ErrorTypeDuplicate, "spec.targetClusters[1]"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validExport()
			tc.mutate(e)
			assertErrors(t, tc.want, ValidateServiceExport(e))
		})
	}
}

func TestNotSupportedListsValues(t *testing.T) {
	p := validPolicy()
	p.Spec.LbType = "RoundRobin"
	list := ValidateGlobalTrafficPolicy(p)
	require.Len(t, list, 1)
	assert.Contains(t, list[0].Error(), `supported values: "Locality", "FailOver", "ActiveActive"`)
}

func int32Ptr(v int32) *int32 { return &v }
