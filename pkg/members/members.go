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
//   - A Cluster may instead name a Secret of the namespace of member
//     credentials (credentialsSecretRef), which only fedmesh reads, holding
//     the member's server, CA and token; the same rules apply to its data.
//   - Every response read from a member is bounded in size (Limits), since
//     a member may answer anything.
//   - One rule, Target.Same, decides when a changed Cluster or Secret needs
//     a new connection, and one function, Key, gives a Cluster's key.
package members

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

// Policy says which unsafe member kubeconfig features fedmesh accepts.
type Policy = validation.KubeconfigPolicy

// DefaultSecretsNamespace is the control plane's namespace of member
// credentials, which only fedmesh's ServiceAccounts may read.
const DefaultSecretsNamespace = "fedmesh-members"

// Secret keys of a member's credentials.
const (
	// SecretServerKey holds the https URL of the member's API server.
	SecretServerKey = "server"
	// SecretCAKey holds the PEM CA bundle that verifies it.
	SecretCAKey = "ca.crt"
	// SecretTokenKey holds fedmesh's bearer token in the member.
	SecretTokenKey = "token"
)

// Options say how fedmesh reaches members. fedmesh-apiserver and
// fedmesh-syncer must be given the same ones.
type Options struct {
	Policy
	// SecretsNamespace is where the Secrets of credentialsSecretRef are.
	SecretsNamespace string
	// Limits bound the responses read from members.
	Limits Limits
}

// DefaultOptions refuse every unsafe feature.
func DefaultOptions() Options {
	return Options{SecretsNamespace: DefaultSecretsNamespace,
		Limits: Limits{MaxResponseBytes: DefaultMaxResponseBytes, MaxEventBytes: DefaultMaxEventBytes}}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	const same = " Give fedmesh-apiserver and fedmesh-syncer the same value."
	fs.StringVar(&o.SecretsNamespace, "member-secrets-namespace", o.SecretsNamespace,
		"Namespace of the control plane holding the Secrets that Clusters name in credentialsSecretRef. Only fedmesh may read it."+same)
	fs.BoolVar(&o.AllowPlainHTTP, "allow-plain-http-members", o.AllowPlainHTTP,
		"UNSAFE: accept member servers that are http://, so that member credentials travel in clear text."+same)
	fs.BoolVar(&o.AllowInsecureTLS, "allow-insecure-member-tls", o.AllowInsecureTLS,
		"UNSAFE: accept member kubeconfigs with insecure-skip-tls-verify, so that whoever answers receives the credentials."+same)
	fs.BoolVar(&o.AllowProxy, "allow-member-proxy", o.AllowProxy,
		"UNSAFE: accept member kubeconfigs with a proxy-url, so that a Cluster's author chooses where fedmesh connects."+same)
	fs.BoolVar(&o.AllowServerPath, "allow-member-server-path", o.AllowServerPath,
		"Accept member server URLs with a path prefix."+same)
	fs.Int64Var(&o.Limits.MaxResponseBytes, "member-max-response-bytes", o.Limits.MaxResponseBytes,
		"Largest body of a member's response (a list, above all) that fedmesh reads; a larger one fails the request.")
	fs.Int64Var(&o.Limits.MaxEventBytes, "member-max-watch-event-bytes", o.Limits.MaxEventBytes,
		"Largest event of a member's watch that fedmesh reads; a larger one ends the watch, which the client starts again.")
}

// kubeconfigPath is where errors about a Cluster's kubeconfig point.
var kubeconfigPath = field.NewPath("spec", "kubeconfig")

// ErrRefused wraps every error for credentials fedmesh refuses or cannot
// find.
var ErrRefused = errors.New("credentials refused")

// Secrets reads the Secrets of the namespace of member credentials; a
// SecretNamespaceLister is one.
type Secrets interface {
	Get(name string) (*corev1.Secret, error)
}

// Target is what a connection to a member is made of: the Cluster's key
// and its credentials, or why there are none. Two equal targets make the
// same connection.
type Target struct {
	// Key is the Cluster's key.
	Key string
	// Err says why the Cluster's credentials cannot be used; it wraps
	// ErrRefused.
	Err error

	creds       *validation.MemberCredentials
	fingerprint string
	limits      Limits
}

// Resolve reads the credentials of the member that c registers, from its
// kubeconfig or from the Secret it names in secrets (nil where fedmesh
// runs without a control plane), and keeps of them data only.
func Resolve(c *v1alpha1.Cluster, secrets Secrets, o Options) Target {
	t := Target{Key: Key(c.Name, &c.Spec), limits: o.Limits}
	var creds *validation.MemberCredentials
	if ref := c.Spec.CredentialsSecretRef; ref != nil {
		creds, t.Err = fromSecret(ref.Name, secrets, o)
	} else {
		var errs field.ErrorList
		if creds, errs = validation.ParseKubeconfig(c.Spec.Kubeconfig, o.Policy, kubeconfigPath); len(errs) > 0 {
			t.Err = errors.Join(ErrRefused, errs.ToAggregate())
		}
	}
	if t.Err != nil {
		t.fingerprint = "error: " + t.Err.Error()
		return t
	}
	t.creds = creds
	t.fingerprint = fingerprint(creds)
	return t
}

// fromSecret reads a member's credentials from a Secret of o's namespace.
func fromSecret(name string, secrets Secrets, o Options) (*validation.MemberCredentials, error) {
	where := fmt.Sprintf("credentials Secret %s/%s", o.SecretsNamespace, name)
	if secrets == nil {
		return nil, fmt.Errorf("%w: %s: fedmesh runs without a control plane and reads no Secret", ErrRefused, where)
	}
	secret, err := secrets.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s not found", ErrRefused, where)
	} else if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRefused, where, err)
	}
	data := field.NewPath("data")
	server, ferr := validation.ParseMemberServer(string(secret.Data[SecretServerKey]), o.Policy, data.Key(SecretServerKey))
	var errs field.ErrorList
	if ferr != nil {
		errs = append(errs, ferr)
	}
	token := strings.TrimSpace(string(secret.Data[SecretTokenKey]))
	if token == "" {
		errs = append(errs, field.Required(data.Key(SecretTokenKey), "fedmesh's bearer token in the member"))
	} else if !validation.IsBearerToken(token) {
		// Not repeated: it is a credential.
		errs = append(errs, field.Invalid(data.Key(SecretTokenKey), field.OmitValueType{}, validation.BearerTokenMessage))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s: %v", ErrRefused, where, errs.ToAggregate())
	}
	return &validation.MemberCredentials{
		Server: server,
		CAData: secret.Data[SecretCAKey],
		Token:  token,
	}, nil
}

// fingerprint identifies credentials without keeping them in clear.
func fingerprint(c *validation.MemberCredentials) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(c.Server), c.CAData, []byte(c.TLSServerName), []byte(strconv.FormatBool(c.Insecure)),
		[]byte(c.ProxyURL), []byte(c.Token), c.ClientCertData, c.ClientKeyData} {
		// Length-prefixed, so that no two different sets hash alike.
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Same reports whether a connection made for t serves o as well: the same
// key and the same credentials. This is the one rule by which fedmesh
// reconnects to a member.
func (t Target) Same(o Target) bool {
	return t.Key == o.Key && t.fingerprint == o.fingerprint
}

// RESTConfig returns the client configuration of the target, built from
// data only, bounding every call by timeout and every response by the
// options' Limits, and identifying fedmesh by userAgent; or the target's
// error.
func (t Target) RESTConfig(userAgent string, timeout time.Duration) (*rest.Config, error) {
	if t.Err != nil {
		return nil, t.Err
	}
	creds := t.creds
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
	LimitResponses(cfg, t.limits)
	return cfg, nil
}

// ClustersUsing returns the names of the clusters whose credentials are
// the Secret named secret: a change of that Secret changes their
// connections.
func ClustersUsing(clusters []*v1alpha1.Cluster, secret string) []string {
	var names []string
	for _, c := range clusters {
		if ref := c.Spec.CredentialsSecretRef; ref != nil && ref.Name == secret {
			names = append(names, c.Name)
		}
	}
	return names
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
