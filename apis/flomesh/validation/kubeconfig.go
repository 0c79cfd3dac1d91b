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
	"fmt"
	"net/url"
	"strings"

	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// A member kubeconfig is data, never code. fedmesh holds a credential for
// every member, so whoever may write a Cluster must not be able to make it
// run a command (exec plugins, auth providers), read a file of its host
// (token, certificate and key paths: the pod's own ServiceAccount token is
// one), act as someone else (impersonation) or send credentials where
// nobody can verify who receives them (plain http, insecure TLS, a proxy).
//
// ParseKubeconfig keeps of a kubeconfig's current context exactly the data
// below and refuses every other credential field by name. fedmesh-apiserver
// refuses such a Cluster on write, and fedmesh-apiserver and fedmesh-syncer
// parse it again, by the same function, before they build a client: a Cluster
// stored before this rule, or written straight into etcd, is refused as well.

// KubeconfigPolicy says which unsafe features of a member kubeconfig fedmesh
// accepts. Each is off by default and each is an explicit flag of
// fedmesh-apiserver and fedmesh-syncer (see pkg/members).
type KubeconfigPolicy struct {
	// AllowPlainHTTP accepts an http:// server: the member's credentials
	// travel in clear text.
	AllowPlainHTTP bool
	// AllowInsecureTLS accepts insecure-skip-tls-verify: whoever is on the
	// path can pose as the member and receive its credentials.
	AllowInsecureTLS bool
	// AllowProxy accepts proxy-url: fedmesh connects wherever that says.
	AllowProxy bool
	// AllowServerPath accepts a server URL with a path prefix, for members
	// behind a gateway that routes by path.
	AllowServerPath bool
}

// MemberCredentials are everything fedmesh takes of a member kubeconfig.
type MemberCredentials struct {
	// Server is the member's API: https://host[:port], with a path or as
	// http:// only where the policy allows it.
	Server string
	// CAData verifies the member's serving certificate; empty means the
	// system's roots.
	CAData []byte
	// TLSServerName is the name the serving certificate is checked for.
	TLSServerName string
	// Insecure skips that check; only where the policy allows it.
	Insecure bool
	// ProxyURL is where connections go through; only where the policy
	// allows it.
	ProxyURL string

	// Token is a bearer token.
	Token string
	// ClientCertData and ClientKeyData are a client certificate and key.
	ClientCertData, ClientKeyData []byte
}

// ValidateKubeconfig checks that a kubeconfig holds only data fedmesh
// accepts, and enough of it to reach a member. See ParseKubeconfig.
func ValidateKubeconfig(kubeconfig string, policy KubeconfigPolicy, fldPath *field.Path) field.ErrorList {
	_, errs := ParseKubeconfig(kubeconfig, policy, fldPath)
	return errs
}

// ParseKubeconfig returns the credentials of the current context of a
// member kubeconfig, or the errors that keep fedmesh from using it. Each
// error names the kubeconfig key at fault under fldPath, in the
// kubeconfig's own spelling: spec.kubeconfig.users[admin].user.exec. The
// kubeconfig is a secret: no error quotes a value of it.
func ParseKubeconfig(kubeconfig string, policy KubeconfigPolicy, fldPath *field.Path) (*MemberCredentials, field.ErrorList) {
	if strings.TrimSpace(kubeconfig) == "" {
		return nil, field.ErrorList{field.Required(fldPath, "a kubeconfig that reaches the member cluster is required")}
	}
	config, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "couldn't get version/kind") {
			// The decoder's wording names Go types; say what it means.
			return nil, field.ErrorList{invalid(fldPath, "does not parse: not a YAML or JSON object with apiVersion v1 and kind Config")}
		}
		return nil, field.ErrorList{invalid(fldPath, "does not parse: %s", truncate(redact(msg, kubeconfig), maxParseErrorLength))}
	}

	contextName := config.CurrentContext
	if contextName == "" {
		return nil, field.ErrorList{field.Required(fldPath.Child("current-context"), "the context fedmesh uses")}
	}
	kubeContext, ok := config.Contexts[contextName]
	if !ok || kubeContext == nil {
		return nil, field.ErrorList{invalid(fldPath.Child("current-context"), "names context %s, which is not defined", quoteName(contextName))}
	}
	contextPath := fldPath.Child("contexts").Key(keyName(contextName)).Child("context")

	creds := &MemberCredentials{}
	var allErrs field.ErrorList
	switch cluster, ok := config.Clusters[kubeContext.Cluster]; {
	case kubeContext.Cluster == "":
		allErrs = append(allErrs, field.Required(contextPath.Child("cluster"), "the cluster of the current context"))
	case !ok || cluster == nil:
		allErrs = append(allErrs, invalid(contextPath.Child("cluster"), "names cluster %s, which is not defined", quoteName(kubeContext.Cluster)))
	default:
		path := fldPath.Child("clusters").Key(keyName(kubeContext.Cluster)).Child("cluster")
		allErrs = append(allErrs, parseKubeconfigCluster(cluster, policy, path, creds)...)
	}
	switch user, ok := config.AuthInfos[kubeContext.AuthInfo]; {
	case kubeContext.AuthInfo == "":
		allErrs = append(allErrs, field.Required(contextPath.Child("user"), "the user of the current context"))
	case !ok || user == nil:
		allErrs = append(allErrs, invalid(contextPath.Child("user"), "names user %s, which is not defined", quoteName(kubeContext.AuthInfo)))
	default:
		path := fldPath.Child("users").Key(keyName(kubeContext.AuthInfo)).Child("user")
		allErrs = append(allErrs, parseKubeconfigUser(user, path, creds)...)
	}
	if len(allErrs) > 0 {
		return nil, allErrs
	}
	return creds, nil
}

// parseKubeconfigCluster takes the server and how to trust it.
func parseKubeconfigCluster(cluster *clientcmdapi.Cluster, policy KubeconfigPolicy, path *field.Path, creds *MemberCredentials) field.ErrorList {
	var allErrs field.ErrorList
	server, err := ParseMemberServer(cluster.Server, policy, path.Child("server"))
	if err != nil {
		allErrs = append(allErrs, err)
	}
	creds.Server = server
	if cluster.CertificateAuthority != "" {
		allErrs = append(allErrs, field.Forbidden(path.Child("certificate-authority"),
			"fedmesh reads no file named by a Cluster; give certificate-authority-data"))
	}
	if cluster.InsecureSkipTLSVerify {
		switch {
		case !policy.AllowInsecureTLS:
			allErrs = append(allErrs, field.Forbidden(path.Child("insecure-skip-tls-verify"),
				"would send the member's credentials to whoever answers; give certificate-authority-data "+
					"(or start fedmesh with --allow-insecure-member-tls, which is unsafe)"))
		case len(cluster.CertificateAuthorityData) > 0:
			// client-go refuses this combination when it builds the
			// transport, which would otherwise show only as a never-ready
			// member.
			allErrs = append(allErrs, invalid(path.Child("insecure-skip-tls-verify"), "may not be set together with certificate-authority-data"))
		}
	}
	if cluster.ProxyURL != "" {
		if !policy.AllowProxy {
			allErrs = append(allErrs, field.Forbidden(path.Child("proxy-url"),
				"fedmesh connects to members directly (or start fedmesh with --allow-member-proxy, which is unsafe)"))
		} else if u, err := url.Parse(cluster.ProxyURL); err != nil || u.Host == "" ||
			(u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
			allErrs = append(allErrs, invalid(path.Child("proxy-url"), "is not an http, https or socks5 URL with a host"))
		}
	}
	creds.CAData = cluster.CertificateAuthorityData
	creds.TLSServerName = cluster.TLSServerName
	creds.Insecure = cluster.InsecureSkipTLSVerify
	creds.ProxyURL = cluster.ProxyURL
	return allErrs
}

// parseKubeconfigUser takes a bearer token or client certificate data,
// and refuses every other way of authenticating by its key.
func parseKubeconfigUser(user *clientcmdapi.AuthInfo, path *field.Path, creds *MemberCredentials) field.ErrorList {
	var allErrs field.ErrorList
	forbid := func(set bool, key, detail string) {
		if set {
			allErrs = append(allErrs, field.Forbidden(path.Child(key), detail))
		}
	}
	const noCode = "fedmesh runs no command and no plugin for a Cluster; give a token or client certificate data"
	const noFiles = "fedmesh reads no file named by a Cluster; give the data inline"
	forbid(user.Exec != nil, "exec", noCode)
	forbid(user.AuthProvider != nil, "auth-provider", noCode)
	forbid(user.TokenFile != "", "tokenFile", noFiles+" (token)")
	forbid(user.ClientCertificate != "", "client-certificate", noFiles+" (client-certificate-data)")
	forbid(user.ClientKey != "", "client-key", noFiles+" (client-key-data)")
	forbid(user.Username != "", "username", "basic authentication is not accepted; give a token or client certificate data")
	forbid(user.Password != "", "password", "basic authentication is not accepted; give a token or client certificate data")
	const noImpersonation = "fedmesh acts only as the identity the credentials name"
	forbid(user.Impersonate != "", "act-as", noImpersonation)
	forbid(user.ImpersonateUID != "", "act-as-uid", noImpersonation)
	forbid(len(user.ImpersonateGroups) > 0, "act-as-groups", noImpersonation)
	forbid(len(user.ImpersonateUserExtra) > 0, "act-as-user-extra", noImpersonation)

	hasCert, hasKey := len(user.ClientCertificateData) > 0, len(user.ClientKeyData) > 0
	switch {
	case hasCert && !hasKey:
		allErrs = append(allErrs, field.Required(path.Child("client-key-data"), "the key of client-certificate-data"))
	case hasKey && !hasCert:
		allErrs = append(allErrs, field.Required(path.Child("client-certificate-data"), "the certificate of client-key-data"))
	case !hasCert && user.Token == "" && len(allErrs) == 0:
		allErrs = append(allErrs, field.Required(path, "credentials: a token, or client-certificate-data and client-key-data"))
	}
	if user.Token != "" && !IsBearerToken(user.Token) {
		allErrs = append(allErrs, invalid(path.Child("token"), "%s", BearerTokenMessage))
	}
	creds.Token = user.Token
	creds.ClientCertData, creds.ClientKeyData = user.ClientCertificateData, user.ClientKeyData
	return allErrs
}

// BearerTokenMessage says why a token is refused by IsBearerToken.
const BearerTokenMessage = "must be one word of printable ASCII, as an Authorization header carries a bearer token"

// IsBearerToken reports whether token can be sent as a bearer token: one
// word of printable ASCII. A token of blanks, or with a space, a control
// character or another byte, would make fedmesh call the member
// anonymously, or fail every request in the transport, or be cut by the
// member's authenticator, rather than be refused with the field at fault.
func IsBearerToken(token string) bool {
	if token == "" {
		return false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// ParseMemberServer returns the URL of a member's API server that fedmesh
// connects to, normalised, or why it refuses it; path is where the URL was
// given. The URL is never repeated in the error: it may carry user info.
func ParseMemberServer(server string, policy KubeconfigPolicy, path *field.Path) (string, *field.Error) {
	if server == "" {
		return "", field.Required(path, "the URL of the member's API")
	}
	u, err := parseServerURL(server, policy)
	if err != nil {
		return "", err.at(path)
	}
	return u, nil
}

// serverError is a refusal of a server URL, typed by whether a flag could
// allow it.
type serverError struct {
	forbidden bool
	detail    string
}

func (e *serverError) at(path *field.Path) *field.Error {
	if e.forbidden {
		return field.Forbidden(path, e.detail)
	}
	// The URL is not repeated: it may carry user info.
	return invalid(path, "%s", e.detail)
}

// parseServerURL returns the server URL fedmesh connects to. As in
// client-go, a server without a scheme is https.
func parseServerURL(server string, policy KubeconfigPolicy) (string, *serverError) {
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	u, err := url.Parse(server)
	switch {
	case err != nil || u.Opaque != "" || u.Host == "":
		return "", &serverError{detail: "is not an https URL with a host"}
	case u.Scheme == "http" && !policy.AllowPlainHTTP:
		return "", &serverError{forbidden: true, detail: "must be https: over http the member's credentials travel in clear text " +
			"(or start fedmesh with --allow-plain-http-members, which is unsafe)"}
	case u.Scheme != "https" && u.Scheme != "http":
		return "", &serverError{detail: "is not an https URL with a host"}
	case u.User != nil:
		return "", &serverError{detail: "must not carry a user name or password; put credentials in the user"}
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(server, "#"):
		return "", &serverError{detail: "must not have a query or a fragment"}
	case u.Path != "" && u.Path != "/" && !policy.AllowServerPath:
		return "", &serverError{forbidden: true, detail: "must not have a path: give the member's API at the root " +
			"(or start fedmesh with --allow-member-server-path)"}
	}
	if u.Path == "/" {
		u.Path = ""
	}
	return u.String(), nil
}

func invalid(path *field.Path, format string, args ...any) *field.Error {
	return field.Invalid(path, field.OmitValueType{}, fmt.Sprintf(format, args...))
}

// quoteName quotes a context, cluster or user name of a kubeconfig for an
// error, bounded so that a pathological name cannot bloat the response.
func quoteName(name string) string {
	return fmt.Sprintf("%q", truncate(name, utilvalidation.DNS1123SubdomainMaxLength))
}

// keyName is a kubeconfig name as a field path key: bounded, and with
// control characters escaped so that no terminal interprets them.
func keyName(name string) string {
	q := quoteName(name)
	return q[1 : len(q)-1]
}
