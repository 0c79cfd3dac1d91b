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

// Package members is the only place where fedmesh builds a client of a
// member cluster, for fedmesh-apiserver and fedmesh-syncer alike. Its rules:
//
//   - A member's credentials are data. The client is built field by field
//     from what validation.ParseKubeconfig keeps of the Cluster's
//     kubeconfig: a server URL, a CA, a TLS server name, a bearer token, a
//     client certificate and key. Never through clientcmd, so never an exec
//     plugin, an auth provider, a file, basic auth or impersonation, however
//     the Cluster got into etcd.
//   - http, a path prefix, insecure TLS and a proxy only behind the opt-in
//     flags of Policy, off by default.
//   - One rule, SameConnection, decides when a changed Cluster needs a new
//     connection, and one function, Key, gives a Cluster's key.
package members

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

// Policy says which unsafe member kubeconfig features fedmesh accepts.
type Policy = validation.KubeconfigPolicy

// AddPolicyFlags adds the opt-in flags of p to fs. fedmesh-apiserver and
// fedmesh-syncer must be given the same ones.
func AddPolicyFlags(p *Policy, fs *pflag.FlagSet) {
	const same = " Give fedmesh-apiserver and fedmesh-syncer the same value."
	fs.BoolVar(&p.AllowPlainHTTP, "allow-plain-http-members", p.AllowPlainHTTP,
		"UNSAFE: accept member kubeconfigs whose server is http://, so that member credentials travel in clear text."+same)
	fs.BoolVar(&p.AllowInsecureTLS, "allow-insecure-member-tls", p.AllowInsecureTLS,
		"UNSAFE: accept member kubeconfigs with insecure-skip-tls-verify, so that whoever answers receives the credentials."+same)
	fs.BoolVar(&p.AllowProxy, "allow-member-proxy", p.AllowProxy,
		"UNSAFE: accept member kubeconfigs with a proxy-url, so that a Cluster's author chooses where fedmesh connects."+same)
	fs.BoolVar(&p.AllowServerPath, "allow-member-server-path", p.AllowServerPath,
		"Accept member kubeconfigs whose server URL has a path prefix."+same)
}

// kubeconfigPath is where errors about a Cluster's kubeconfig point.
var kubeconfigPath = field.NewPath("spec", "kubeconfig")

// ErrRefused wraps every error RESTConfig returns for a kubeconfig it
// refuses.
var ErrRefused = errors.New("kubeconfig refused")

// RESTConfig returns the client configuration of the member that c
// registers, built from data only, or an error wrapping ErrRefused that
// names each kubeconfig key at fault. The configuration bounds every call
// by timeout and identifies fedmesh by userAgent.
func RESTConfig(c *v1alpha1.Cluster, policy Policy, userAgent string, timeout time.Duration) (*rest.Config, error) {
	creds, errs := validation.ParseKubeconfig(c.Spec.Kubeconfig, policy, kubeconfigPath)
	if len(errs) > 0 {
		return nil, errors.Join(ErrRefused, errs.ToAggregate())
	}
	cfg := &rest.Config{
		Host:        creds.Server,
		BearerToken: creds.Token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     creds.CAData,
			ServerName: creds.TLSServerName,
			Insecure:   creds.Insecure,
			CertData:   creds.ClientCertData,
			KeyData:    creds.ClientKeyData,
		},
		Timeout:   timeout,
		UserAgent: userAgent,
	}
	if creds.ProxyURL != "" {
		u, err := url.Parse(creds.ProxyURL)
		if err != nil {
			return nil, errors.Join(ErrRefused, err)
		}
		cfg.Proxy = http.ProxyURL(u)
	}
	return cfg, nil
}

// SameConnection reports whether a connection built for a Cluster of spec
// a still serves a Cluster of spec b: the same credentials and the same
// key. Anything else (the gateway) is data the connection carries, not
// what it is made of.
func SameConnection(a, b *v1alpha1.ClusterSpec) bool {
	return a.Kubeconfig == b.Kubeconfig && a.Region == b.Region && a.Zone == b.Zone && a.Group == b.Group
}

// Key returns the key region/zone/group/name of a Cluster. Clusters read
// from the server are defaulted; an empty part is taken as its default all
// the same, so that the key never depends on who built the object.
func Key(name string, spec *v1alpha1.ClusterSpec) string {
	part := func(s string) string {
		if s == "" {
			return v1alpha1.DefaultKeyPart
		}
		return s
	}
	return flomesh.ClusterKey(part(spec.Region), part(spec.Zone), part(spec.Group), name)
}
