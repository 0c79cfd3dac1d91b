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
	"net/url"
	"strings"
	"testing"

	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

func FuzzValidateClusterKey(f *testing.F) {
	for _, seed := range []string{
		"default/default/default/cluster-1",
		"us-east-1/az-1/prod/c",
		"",
		"/",
		"///",
		"a/b/c",
		"a/b/c/d/e",
		"A/b/c/d",
		"a/b/c/-d",
		"a/b/c/d\n",
		"a/b/c/" + strings.Repeat("x", 64),
		"a/b/c/ü",
	} {
		f.Add(seed)
	}
	path := field.NewPath("spec", "targets").Index(0).Child("clusterKey")
	f.Fuzz(func(t *testing.T, key string) {
		list := ValidateClusterKey(key, path)
		region, zone, group, name, err := ParseClusterKey(key)
		if (len(list) == 0) != (err == nil) {
			t.Fatalf("ValidateClusterKey(%q) = %v but ParseClusterKey error = %v", key, list, err)
		}
		for _, e := range list {
			if e.Field != path.String() {
				t.Fatalf("error on %s, want %s", e.Field, path)
			}
		}
		if err != nil {
			return
		}
		if got := flomesh.ClusterKey(region, zone, group, name); got != key {
			t.Fatalf("key %q parses to parts that join to %q", key, got)
		}
		for _, part := range []string{region, zone, group, name} {
			if msgs := utilvalidation.IsDNS1123Label(part); len(msgs) > 0 {
				t.Fatalf("key %q accepted with part %q: %v", key, part, msgs)
			}
		}
	})
}

func FuzzValidateKubeconfig(f *testing.F) {
	f.Add(testKubeconfig(f, nil))
	f.Add(testKubeconfig(f, withUser(&clientcmdapi.AuthInfo{Token: testToken})))
	f.Add(testKubeconfig(f, withUser(&clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "creds"}})))
	f.Add(testKubeconfig(f, func(cfg *clientcmdapi.Config) { cfg.CurrentContext = "" }))
	f.Add(testKubeconfig(f, func(cfg *clientcmdapi.Config) { cfg.Contexts["member"].Cluster = "gone" }))
	f.Add(testKubeconfig(f, func(cfg *clientcmdapi.Config) { cfg.Clusters["member"].Server = "" }))
	f.Add(`{"apiVersion":"v1","kind":"Config","current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],` +
		`"clusters":[{"name":"k","cluster":{"server":"https://h"}}],"users":[{"name":"u","user":{"token":"t0k3n-value"}}]}`)
	f.Add("apiVersion: v1\nkind: " + testToken + "\n")
	f.Add("apiVersion: \"\\u00e9" + testToken + "\"\nkind: Config\n")
	for _, token := range []string{`" "`, `"two words"`, `"t0k3n\n"`, `"t0k3n\r\nX-Other: 1"`} {
		f.Add("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
			"clusters: [{name: k, cluster: {server: https://h}}]\nusers: [{name: u, user: {token: " + token + "}}]\n")
	}
	f.Add("current-context: c\ncontexts:\n- name: c\n  context: null\n")
	f.Add("users: [")
	f.Add("- a\n- b\n")
	f.Add("")
	for _, user := range []string{
		"{exec: {command: id, apiVersion: client.authentication.k8s.io/v1}}",
		"{auth-provider: {name: oidc}}",
		"{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
		"{client-certificate: /c, client-key: /k}",
		"{username: a, password: b}",
		"{token: t0k3n-value, as: system:admin}",
		"{token: t0k3n-value, as-groups: [system:masters]}",
	} {
		f.Add("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
			"clusters: [{name: k, cluster: {server: https://h}}]\nusers: [{name: u, user: " + user + "}]\n")
	}
	for _, cluster := range []string{
		"{server: http://h}", "{server: https://u:p@h}", "{server: https://h/p}", "{server: https://h?q}",
		"{server: https://h, proxy-url: http://p}", "{server: https://h, insecure-skip-tls-verify: true}",
		"{server: https://h, certificate-authority: /ca}",
	} {
		f.Add("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
			"clusters: [{name: k, cluster: " + cluster + "}]\nusers: [{name: u, user: {token: t0k3n-value}}]\n")
	}

	path := field.NewPath("spec", "kubeconfig")
	f.Fuzz(func(t *testing.T, kubeconfig string) {
		creds, list := ParseKubeconfig(kubeconfig, KubeconfigPolicy{}, path)
		if (creds == nil) == (len(list) == 0) {
			t.Fatalf("credentials %v with errors %v", creds != nil, list)
		}
		for _, e := range list {
			if !isUnder(e.Field, path) {
				t.Fatalf("error on %s, want %s", e.Field, path)
			}
			if e.Type == field.ErrorTypeInvalid && e.BadValue != (field.OmitValueType{}) {
				t.Fatalf("error carries the kubeconfig: %v", e)
			}
		}

		config, err := clientcmd.Load([]byte(kubeconfig))
		if err != nil {
			if len(list) == 0 {
				t.Fatalf("accepted a kubeconfig that does not load: %v", err)
			}
			// Whatever the parser quotes, no candidate secret survives
			// between the markers.
			scrubbed := redact(err.Error(), kubeconfig)
			for _, c := range secretCandidates(kubeconfig) {
				for _, segment := range strings.Split(scrubbed, redacted) {
					if strings.Contains(segment, c) {
						t.Fatalf("%q survives scrubbing in %q", c, scrubbed)
					}
				}
			}
			return
		}
		if len(list) > 0 {
			return
		}
		ctx := config.Contexts[config.CurrentContext]
		if ctx == nil || config.Clusters[ctx.Cluster] == nil || config.Clusters[ctx.Cluster].Server == "" ||
			config.AuthInfos[ctx.AuthInfo] == nil {
			t.Fatalf("accepted a kubeconfig whose current context does not resolve")
		}
		// The whitelist: what is accepted is data only, over https, and
		// the credentials hold what the kubeconfig said.
		cluster, user := config.Clusters[ctx.Cluster], config.AuthInfos[ctx.AuthInfo]
		if user.Exec != nil || user.AuthProvider != nil || user.TokenFile != "" || user.ClientCertificate != "" ||
			user.ClientKey != "" || user.Username != "" || user.Password != "" || user.Impersonate != "" ||
			user.ImpersonateUID != "" || len(user.ImpersonateGroups) > 0 || len(user.ImpersonateUserExtra) > 0 {
			t.Fatalf("accepted a user with more than data: %+v", user)
		}
		if cluster.CertificateAuthority != "" || cluster.InsecureSkipTLSVerify || cluster.ProxyURL != "" {
			t.Fatalf("accepted a cluster with a file, insecure TLS or a proxy: %+v", cluster)
		}
		u, err := url.Parse(creds.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" {
			t.Fatalf("accepted server %q", creds.Server)
		}
		if creds.Token != user.Token || string(creds.ClientKeyData) != string(user.ClientKeyData) {
			t.Fatalf("credentials differ from the kubeconfig's")
		}
		if creds.Token != "" && !IsBearerToken(creds.Token) {
			t.Fatalf("accepted token %q, which no Authorization header carries", creds.Token)
		}
	})
}
