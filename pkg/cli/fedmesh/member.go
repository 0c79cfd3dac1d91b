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
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/membercrds"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
)

// What join creates in a member.
const (
	// MemberNamespace holds the ServiceAccount and its token Secrets.
	MemberNamespace = "fedmesh-system"
	// MemberServiceAccount is the identity fedmesh uses in the member.
	MemberServiceAccount = "fedmesh"
	// MemberRole names the ClusterRole and the ClusterRoleBinding that
	// grant the ServiceAccount the rules of memberrbac.Rules.
	MemberRole = "fedmesh:member"
	// tokenSecretPrefix starts the names of the Secrets the tokens are
	// bound to: deleting one revokes its token.
	tokenSecretPrefix = "fedmesh-token-"

	managedByLabel = "app.kubernetes.io/managed-by"
	partOfLabel    = "app.kubernetes.io/part-of"
	// clusterAnnotation, on a token Secret, names the Cluster the token
	// was issued for.
	clusterAnnotation = "flomesh.io/cluster"
)

func memberLabels() map[string]string {
	return map[string]string{managedByLabel: FieldManager, partOfLabel: "fedmesh"}
}

func ownedByPlugin(labels map[string]string) bool { return labels[managedByLabel] == FieldManager }

// memberFlags say how to reach a member as its admin.
type memberFlags struct {
	kubeconfig string
	context    string
	timeout    time.Duration
	// warnings is where the member's warnings are written.
	warnings io.Writer
}

func (f *memberFlags) addFlags(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.kubeconfig, "member-kubeconfig", "", "Path to a kubeconfig of the member cluster, as its admin (default: that of --kubeconfig, else the standard kubeconfig loading rules)")
	fs.StringVar(&f.context, "member-context", "", "Context of the member cluster in that kubeconfig (default: its current context)")
	fs.DurationVar(&f.timeout, "member-timeout", defaultRequestTimeout, "How long to wait for an answer of the member before giving up on it")
}

func (f *memberFlags) set() bool { return f.kubeconfig != "" || f.context != "" }

// member is an admin connection to a member cluster.
type member struct {
	// endpoint is where the member is, as its kubeconfig says.
	endpoint endpoint
	// where names the member in messages.
	where   string
	config  *rest.Config
	kube    kubernetes.Interface
	fedmesh versioned.Interface
}

// connect loads the member's kubeconfig, or else the control plane's
// (--kubeconfig), and checks that the member answers.
func (f *memberFlags) connect(ctx context.Context, controlPlaneKubeconfig string) (*member, error) {
	if !f.set() {
		return nil, fmt.Errorf("no member given: pass --member-kubeconfig and/or --member-context")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	} else if controlPlaneKubeconfig != "" {
		rules.ExplicitPath = controlPlaneKubeconfig
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if err := checkContext("member kubeconfig", "--member-context", raw.Contexts, raw.CurrentContext, f.context); err != nil {
		return nil, err
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = f.timeout
	cfg.UserAgent = FieldManager
	cfg.WarningHandler = warningsTo(f.warnings)
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	m := &member{config: cfg, where: cfg.Host}
	m.endpoint = endpoint{Server: cfg.Host, CAData: cfg.CAData, TLSServerName: cfg.ServerName, Insecure: cfg.Insecure}
	if name := contextName(raw, f.context); name != "" {
		m.where = fmt.Sprintf("%s (context %s)", cfg.Host, name)
		if c := raw.Clusters[raw.Contexts[name].Cluster]; c != nil {
			m.endpoint.Server = c.Server
			m.endpoint.ProxyURL = c.ProxyURL
		}
	}
	if m.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if m.fedmesh, err = versioned.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if err := m.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		return nil, m.wrap(err)
	}
	return m, nil
}

func contextName(raw clientcmdapi.Config, override string) string {
	if override != "" {
		return override
	}
	return raw.CurrentContext
}

// checkContext fails when the context to use does not exist.
func checkContext(what, flag string, contexts map[string]*clientcmdapi.Context, current, override string) error {
	name := contextName(clientcmdapi.Config{CurrentContext: current}, override)
	if name == "" {
		return fmt.Errorf("%s: no current context; pass %s", what, flag)
	}
	if contexts[name] == nil {
		known := sets.List(sets.KeySet(contexts))
		if len(known) == 0 {
			return fmt.Errorf("%s: context %q does not exist (the kubeconfig has no contexts)", what, name)
		}
		return fmt.Errorf("%s: context %q does not exist (contexts: %s)", what, name, strings.Join(known, ", "))
	}
	return nil
}

// wrap words an error of a request to the member.
func (m *member) wrap(err error) error {
	if reason := unreachable(err); reason != "" {
		return fmt.Errorf("cannot reach the member at %s: %s", m.where, reason)
	}
	if apierrors.IsUnauthorized(err) {
		return fmt.Errorf("the member at %s refused the credentials of its kubeconfig", m.where)
	}
	return fmt.Errorf("member %s: %w", m.where, err)
}

// clusterUID returns the UID of the member's kube-system namespace: what
// the member is, as long as it lives, whatever its address.
func (m *member) clusterUID(ctx context.Context) (string, error) {
	ns, err := m.kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", m.wrap(fmt.Errorf("reading namespace %s, which tells the member: %w", metav1.NamespaceSystem, err))
	}
	return string(ns.UID), nil
}

// serviceAccountUID returns the UID of the member's fedmesh ServiceAccount,
// or "" when it does not exist.
func (m *member) serviceAccountUID(ctx context.Context) (string, error) {
	sa, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).Get(ctx, MemberServiceAccount, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", m.wrap(err)
	}
	return string(sa.UID), nil
}

// awaitNamespaceGone waits, up to timeout, until the namespace
// fedmesh-system is not terminating: a namespace being deleted refuses new
// objects until the member's namespace controller (in
// kube-controller-manager) has emptied and removed it. It writes progress
// to w and reports whether it had to wait.
func (m *member) awaitNamespaceGone(ctx context.Context, w io.Writer, timeout time.Duration) (bool, error) {
	ns, err := m.kube.CoreV1().Namespaces().Get(ctx, MemberNamespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, m.wrap(err)
	}
	if ns.DeletionTimestamp == nil {
		return false, nil
	}
	w = escaping(w)
	fmt.Fprintf(w, "waiting for namespace %s to finish terminating\n", MemberNamespace)
	start := time.Now()
	deadline := start.Add(timeout)
	// Each read is bounded by --member-timeout, not cut by the deadline,
	// so that an error is the member's answer.
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cur, err := m.kube.CoreV1().Namespaces().Get(ctx, MemberNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.DeletionTimestamp == nil) {
			// Gone, or gone and made again between two reads.
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return true, fmt.Errorf("namespace %s of the member at %s is still terminating after %s as last read: %s; reading it again failed: %v; nothing was changed",
					MemberNamespace, m.where, timeout, terminationStatus(ns, time.Now()), m.wrap(err))
			}
			return true, fmt.Errorf("namespace %s of the member at %s is still terminating after %s: %s; nothing was changed, run join again once it is gone",
				MemberNamespace, m.where, timeout, terminationStatus(cur, time.Now()))
		}
		if err == nil {
			ns = cur
		}
	}
	fmt.Fprintf(w, "namespace %s is gone after %s\n", MemberNamespace, time.Since(start).Round(100*time.Millisecond))
	return true, nil
}

// namespaceControllerDelay is how long the namespace controller of
// kube-controller-manager lets a deleted namespace be before it starts
// removing its content, and how long it reports nothing on it.
const namespaceControllerDelay = 5 * time.Second

// terminationStatus says why a namespace being deleted is still there at
// now, as the namespace controller reports it in its conditions.
func terminationStatus(ns *corev1.Namespace, now time.Time) string {
	var why []string
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			why = append(why, fmt.Sprintf("%s: %s", c.Type, c.Message))
		}
	}
	if len(why) > 0 {
		return strings.Join(why, "; ")
	}
	if ns.DeletionTimestamp == nil {
		return "no namespace controller has reported on it"
	}
	age := now.Sub(ns.DeletionTimestamp.Time).Round(time.Second)
	if age <= 3*namespaceControllerDelay {
		return fmt.Sprintf("deleted %s ago, the member's namespace controller has not reported on it yet (it starts %s after a deletion)", age, namespaceControllerDelay)
	}
	return fmt.Sprintf("deleted %s ago, no namespace controller has reported on it: does the member run kube-controller-manager?", age)
}

// ensureIdentity creates or updates, by server-side apply, the namespace,
// the ServiceAccount and the ClusterRole and ClusterRoleBinding that grant
// it memberrbac.Rules, no more: a rule added by hand is removed, a rule
// removed by hand is restored.
func (m *member) ensureIdentity(ctx context.Context) error {
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	labels := memberLabels()
	// A namespace that exists already keeps its owner: the plugin then
	// never deletes it.
	if _, err := m.kube.CoreV1().Namespaces().Get(ctx, MemberNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := m.kube.CoreV1().Namespaces().Apply(ctx, corev1ac.Namespace(MemberNamespace).WithLabels(labels), apply); err != nil {
			return m.wrap(err)
		}
	} else if err != nil {
		return m.wrap(err)
	}
	if _, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).Apply(ctx,
		corev1ac.ServiceAccount(MemberServiceAccount, MemberNamespace).WithLabels(labels), apply); err != nil {
		return m.wrap(err)
	}
	role := rbacv1ac.ClusterRole(MemberRole).WithLabels(labels).WithRules(policyRules(memberrbac.Rules())...)
	if _, err := m.kube.RbacV1().ClusterRoles().Apply(ctx, role, apply); err != nil {
		return m.wrap(err)
	}
	binding := rbacv1ac.ClusterRoleBinding(MemberRole).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(MemberRole)).
		WithSubjects(fedmeshSubject())
	if _, err := m.kube.RbacV1().ClusterRoleBindings().Apply(ctx, binding, apply); err != nil {
		return m.wrap(err)
	}
	// In fedmesh's own namespace only: revoking its tokens when its
	// Cluster is deleted.
	tokens := rbacv1ac.Role(MemberRole, MemberNamespace).WithLabels(labels).WithRules(policyRules(memberrbac.TokenRules)...)
	if _, err := m.kube.RbacV1().Roles(MemberNamespace).Apply(ctx, tokens, apply); err != nil {
		return m.wrap(err)
	}
	tokensBinding := rbacv1ac.RoleBinding(MemberRole, MemberNamespace).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(MemberRole)).
		WithSubjects(fedmeshSubject())
	if _, err := m.kube.RbacV1().RoleBindings(MemberNamespace).Apply(ctx, tokensBinding, apply); err != nil {
		return m.wrap(err)
	}
	return nil
}

// installCRDs installs or upgrades the member CRDs, as the member's
// administrator: fedmesh's own identity may not create CRDs.
func (m *member) installCRDs(ctx context.Context) error {
	crds, err := membercrds.Load()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(m.config)
	if err != nil {
		return err
	}
	if err := membercrds.Install(ctx, dyn, FieldManager, crds, time.Minute); err != nil {
		return m.wrap(err)
	}
	return nil
}

// ensurePolicies applies the admission policies and bindings that confine
// fedmesh's identity in the member to its own objects
// (memberrbac.AdmissionPolicies), given the class of the Ingresses
// fedmesh-syncer writes.
func (m *member) ensurePolicies(ctx context.Context, ingressClass string) error {
	policies, bindings := memberrbac.AdmissionPolicies(ingressClass, imports.ReservedNamespaces)
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}
	api := m.kube.AdmissionregistrationV1()
	for _, p := range policies {
		p.Labels = memberLabels()
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if _, err := api.ValidatingAdmissionPolicies().Patch(ctx, p.Name, types.ApplyPatchType, data, opts); err != nil {
			return m.wrap(fmt.Errorf("ValidatingAdmissionPolicy %s: %w", p.Name, err))
		}
	}
	for _, b := range bindings {
		b.Labels = memberLabels()
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if _, err := api.ValidatingAdmissionPolicyBindings().Patch(ctx, b.Name, types.ApplyPatchType, data, opts); err != nil {
			return m.wrap(fmt.Errorf("ValidatingAdmissionPolicyBinding %s: %w", b.Name, err))
		}
	}
	return nil
}

// policyRules are rules as apply configurations.
func policyRules(rules []rbacv1.PolicyRule) []*rbacv1ac.PolicyRuleApplyConfiguration {
	out := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(rules))
	for _, r := range rules {
		out = append(out, rbacv1ac.PolicyRule().WithAPIGroups(r.APIGroups...).WithResources(r.Resources...).
			WithResourceNames(r.ResourceNames...).WithVerbs(r.Verbs...))
	}
	return out
}

// fedmeshSubject is fedmesh's ServiceAccount in the member, as a binding
// subject.
func fedmeshSubject() *rbacv1ac.SubjectApplyConfiguration {
	return rbacv1ac.Subject().WithKind("ServiceAccount").WithName(MemberServiceAccount).WithNamespace(MemberNamespace)
}

// issueToken obtains, through the TokenRequest API, a token of the
// ServiceAccount valid for expiration, bound to a new Secret: deleting the
// Secret revokes the token. It returns the token and the Secret's name.
func (m *member) issueToken(ctx context.Context, cluster string, expiration time.Duration) (string, string, error) {
	secret, err := m.kube.CoreV1().Secrets(MemberNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: tokenSecretPrefix,
			Labels:       memberLabels(),
			Annotations: map[string]string{
				clusterAnnotation:           cluster,
				"kubernetes.io/description": "the token of " + MemberServiceAccount + " that fedmesh uses is bound to this Secret: deleting it revokes the token",
			},
		},
		Type: corev1.SecretTypeOpaque,
	}, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		return "", "", m.wrap(err)
	}
	tr, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).CreateToken(ctx, MemberServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To(int64(expiration / time.Second)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		_ = m.kube.CoreV1().Secrets(MemberNamespace).Delete(ctx, secret.Name, metav1.DeleteOptions{})
		return "", "", m.wrap(err)
	}
	return tr.Status.Token, secret.Name, nil
}

// deleteToken deletes one token Secret, revoking its token, as best it can.
func (m *member) deleteToken(ctx context.Context, secret string) {
	_ = m.kube.CoreV1().Secrets(MemberNamespace).Delete(ctx, secret, metav1.DeleteOptions{})
}

// revokeTokens deletes the token Secrets of the plugin but keep, which
// revokes their tokens.
func (m *member) revokeTokens(ctx context.Context, keep string) ([]string, error) {
	list, err := m.kube.CoreV1().Secrets(MemberNamespace).List(ctx, metav1.ListOptions{LabelSelector: managedByLabel + "=" + FieldManager})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, m.wrap(err)
	}
	var revoked []string
	for _, s := range list.Items {
		if s.Name == keep || !strings.HasPrefix(s.Name, tokenSecretPrefix) {
			continue
		}
		if err := m.kube.CoreV1().Secrets(MemberNamespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return revoked, m.wrap(err)
		}
		revoked = append(revoked, s.Name)
	}
	sort.Strings(revoked)
	return revoked, nil
}

// removeIdentity deletes what ensureIdentity and issueToken created, the
// namespace only when join created it. It returns what it deleted.
func (m *member) removeIdentity(ctx context.Context) ([]string, error) {
	var removed []string
	del := func(what string, get func() (map[string]string, error), remove func() error) error {
		labels, err := get()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return m.wrap(err)
		}
		if !ownedByPlugin(labels) {
			return nil
		}
		if err := remove(); err != nil && !apierrors.IsNotFound(err) {
			return m.wrap(err)
		}
		removed = append(removed, what)
		return nil
	}
	k := m.kube
	opts := metav1.DeleteOptions{}
	type step struct {
		what   string
		get    func() (map[string]string, error)
		remove func() error
	}
	var steps []step
	// The policies go with the identity they confine, bindings first.
	policies, bindings := memberrbac.AdmissionPolicies("", nil)
	for _, b := range bindings {
		steps = append(steps, step{"ValidatingAdmissionPolicyBinding " + b.Name, func() (map[string]string, error) {
			o, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, b.Name, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error {
			return k.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, b.Name, opts)
		}})
	}
	for _, p := range policies {
		steps = append(steps, step{"ValidatingAdmissionPolicy " + p.Name, func() (map[string]string, error) {
			o, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, p.Name, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error {
			return k.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, p.Name, opts)
		}})
	}
	steps = append(steps, []step{
		{"ClusterRoleBinding " + MemberRole, func() (map[string]string, error) {
			o, err := k.RbacV1().ClusterRoleBindings().Get(ctx, MemberRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().ClusterRoleBindings().Delete(ctx, MemberRole, opts) }},
		{"ClusterRole " + MemberRole, func() (map[string]string, error) {
			o, err := k.RbacV1().ClusterRoles().Get(ctx, MemberRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().ClusterRoles().Delete(ctx, MemberRole, opts) }},
		{"RoleBinding " + MemberNamespace + "/" + MemberRole, func() (map[string]string, error) {
			o, err := k.RbacV1().RoleBindings(MemberNamespace).Get(ctx, MemberRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().RoleBindings(MemberNamespace).Delete(ctx, MemberRole, opts) }},
		{"Role " + MemberNamespace + "/" + MemberRole, func() (map[string]string, error) {
			o, err := k.RbacV1().Roles(MemberNamespace).Get(ctx, MemberRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().Roles(MemberNamespace).Delete(ctx, MemberRole, opts) }},
	}...)
	for _, s := range steps {
		if err := del(s.what, s.get, s.remove); err != nil {
			return removed, err
		}
	}
	gw, err := m.removeGatewayIdentity(ctx)
	removed = append(removed, gw...)
	if err != nil {
		return removed, err
	}
	// The token Secrets go before the ServiceAccount, and explicitly: a
	// namespace being deleted may take long to empty.
	revoked, err := m.revokeTokens(ctx, "")
	for _, r := range revoked {
		removed = append(removed, "Secret "+MemberNamespace+"/"+r)
	}
	if err != nil {
		return removed, err
	}
	more := []struct {
		what   string
		get    func() (map[string]string, error)
		remove func() error
	}{
		{"ServiceAccount " + MemberNamespace + "/" + MemberServiceAccount, func() (map[string]string, error) {
			o, err := k.CoreV1().ServiceAccounts(MemberNamespace).Get(ctx, MemberServiceAccount, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error {
			return k.CoreV1().ServiceAccounts(MemberNamespace).Delete(ctx, MemberServiceAccount, opts)
		}},
		{"Namespace " + MemberNamespace, func() (map[string]string, error) {
			o, err := k.CoreV1().Namespaces().Get(ctx, MemberNamespace, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.CoreV1().Namespaces().Delete(ctx, MemberNamespace, opts) }},
	}
	for _, s := range more {
		if err := del(s.what, s.get, s.remove); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func labelsOf(o metav1.Object, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	return o.GetLabels(), nil
}

// validServer checks a --member-server value.
func validServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("--member-server %q is not a URL such as https://10.0.0.11:6443", s)
	}
	return nil
}
