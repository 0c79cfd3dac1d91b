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
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Redacted replaces a secret in what the plugin prints.
const Redacted = "<redacted>"

// endpoint is how to reach a member's API server, without credentials:
// what a kubeconfig built for fedmesh keeps of the member's own.
type endpoint struct {
	Server        string
	CAData        []byte
	TLSServerName string
	Insecure      bool
	ProxyURL      string
}

// fedmeshUser is the name of the user entry in the kubeconfigs the plugin
// builds.
const fedmeshUser = "fedmesh"

// buildKubeconfig returns a minimal kubeconfig for cluster name: one
// cluster, the CA embedded; one user, holding only token; one context, the
// current one.
func buildKubeconfig(name string, ep endpoint, token string) ([]byte, error) {
	if ep.Server == "" {
		return nil, fmt.Errorf("the member has no server address")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   ep.Server,
		CertificateAuthorityData: ep.CAData,
		TLSServerName:            ep.TLSServerName,
		InsecureSkipTLSVerify:    ep.Insecure,
		ProxyURL:                 ep.ProxyURL,
	}
	cfg.AuthInfos[fedmeshUser] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: fedmeshUser}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// current returns the current context's cluster and user of a kubeconfig.
func current(kubeconfig string) (*clientcmdapi.Cluster, *clientcmdapi.AuthInfo, error) {
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return nil, nil, fmt.Errorf("kubeconfig: no current context")
	}
	cluster := cfg.Clusters[ctx.Cluster]
	if cluster == nil {
		return nil, nil, fmt.Errorf("kubeconfig: context %q names no cluster", cfg.CurrentContext)
	}
	user := cfg.AuthInfos[ctx.AuthInfo]
	if user == nil {
		user = &clientcmdapi.AuthInfo{}
	}
	return cluster, user, nil
}

// endpointOf returns where a kubeconfig's current context points.
func endpointOf(kubeconfig string) (endpoint, error) {
	c, _, err := current(kubeconfig)
	if err != nil {
		return endpoint{}, err
	}
	return endpoint{
		Server: c.Server, CAData: c.CertificateAuthorityData, TLSServerName: c.TLSServerName,
		Insecure: c.InsecureSkipTLSVerify, ProxyURL: c.ProxyURL,
	}, nil
}

// redactKubeconfig returns kubeconfig with every credential it embeds
// replaced by Redacted: tokens, passwords and client keys. A kubeconfig
// that does not parse is redacted whole.
func redactKubeconfig(kubeconfig string) string {
	if kubeconfig == "" {
		return ""
	}
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return Redacted
	}
	for _, u := range cfg.AuthInfos {
		if u.Token != "" {
			u.Token = Redacted
		}
		if u.Password != "" {
			u.Password = Redacted
		}
		if len(u.ClientKeyData) > 0 {
			u.ClientKeyData = []byte(Redacted)
		}
		if u.AuthProvider != nil {
			for k := range u.AuthProvider.Config {
				u.AuthProvider.Config[k] = Redacted
			}
		}
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return Redacted
	}
	return string(b)
}
