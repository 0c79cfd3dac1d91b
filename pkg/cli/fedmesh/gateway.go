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
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/pkg/memberrbac"
)

// The gateway's token Secrets are labelled apart from fedmesh's own, so
// that neither join's revocation of fedmesh's earlier tokens nor
// fedmesh-syncer's revocation of its own (memberrbac.TokenSecretsSelector)
// revokes a gateway's.
const (
	componentLabel          = "app.kubernetes.io/component"
	gatewayComponent        = "fedmesh-gateway-token"
	gatewayTokenPrefix      = "fedmesh-gateway-token-"
	gatewayTokensSelector   = componentLabel + "=" + gatewayComponent
	defaultGatewayTokenLife = 8760 * time.Hour
)

func gatewaySubject() *rbacv1ac.SubjectApplyConfiguration {
	return rbacv1ac.Subject().WithKind("ServiceAccount").WithName(memberrbac.GatewayServiceAccount).WithNamespace(MemberNamespace)
}

// ensureGatewayIdentity creates or updates fedmesh-gateway's ServiceAccount
// and the ClusterRole and ClusterRoleBinding that grant it
// memberrbac.GatewayRules, no more, as ensureIdentity does for fedmesh's.
func (m *member) ensureGatewayIdentity(ctx context.Context) error {
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	labels := memberLabels()
	if _, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).Apply(ctx,
		corev1ac.ServiceAccount(memberrbac.GatewayServiceAccount, MemberNamespace).WithLabels(labels), apply); err != nil {
		return m.wrap(err)
	}
	role := rbacv1ac.ClusterRole(memberrbac.GatewayRole).WithLabels(labels).WithRules(policyRules(memberrbac.Merge(memberrbac.GatewayRules))...)
	if _, err := m.kube.RbacV1().ClusterRoles().Apply(ctx, role, apply); err != nil {
		return m.wrap(err)
	}
	binding := rbacv1ac.ClusterRoleBinding(memberrbac.GatewayRole).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(memberrbac.GatewayRole)).
		WithSubjects(gatewaySubject())
	if _, err := m.kube.RbacV1().ClusterRoleBindings().Apply(ctx, binding, apply); err != nil {
		return m.wrap(err)
	}
	return nil
}

// removeGatewayIdentity deletes what ensureGatewayIdentity and
// gateway-kubeconfig created, revoking the gateway's tokens. It returns
// what it deleted.
func (m *member) removeGatewayIdentity(ctx context.Context) ([]string, error) {
	var removed []string
	k := m.kube
	opts := metav1.DeleteOptions{}
	steps := []struct {
		what   string
		get    func() (map[string]string, error)
		remove func() error
	}{
		{"ClusterRoleBinding " + memberrbac.GatewayRole, func() (map[string]string, error) {
			o, err := k.RbacV1().ClusterRoleBindings().Get(ctx, memberrbac.GatewayRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().ClusterRoleBindings().Delete(ctx, memberrbac.GatewayRole, opts) }},
		{"ClusterRole " + memberrbac.GatewayRole, func() (map[string]string, error) {
			o, err := k.RbacV1().ClusterRoles().Get(ctx, memberrbac.GatewayRole, metav1.GetOptions{})
			return labelsOf(o, err)
		}, func() error { return k.RbacV1().ClusterRoles().Delete(ctx, memberrbac.GatewayRole, opts) }},
	}
	for _, s := range steps {
		labels, err := s.get()
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return removed, m.wrap(err)
		}
		if !ownedByPlugin(labels) {
			continue
		}
		if err := s.remove(); err != nil && !apierrors.IsNotFound(err) {
			return removed, m.wrap(err)
		}
		removed = append(removed, s.what)
	}
	list, err := k.CoreV1().Secrets(MemberNamespace).List(ctx, metav1.ListOptions{LabelSelector: gatewayTokensSelector})
	if err != nil && !apierrors.IsNotFound(err) {
		return removed, m.wrap(err)
	}
	if list != nil {
		for _, s := range list.Items {
			if err := k.CoreV1().Secrets(MemberNamespace).Delete(ctx, s.Name, opts); err != nil && !apierrors.IsNotFound(err) {
				return removed, m.wrap(err)
			}
			removed = append(removed, "Secret "+MemberNamespace+"/"+s.Name)
		}
	}
	sa, err := k.CoreV1().ServiceAccounts(MemberNamespace).Get(ctx, memberrbac.GatewayServiceAccount, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return removed, m.wrap(err)
	case ownedByPlugin(sa.Labels):
		if err := k.CoreV1().ServiceAccounts(MemberNamespace).Delete(ctx, memberrbac.GatewayServiceAccount, opts); err != nil && !apierrors.IsNotFound(err) {
			return removed, m.wrap(err)
		}
		removed = append(removed, "ServiceAccount "+MemberNamespace+"/"+memberrbac.GatewayServiceAccount)
	}
	return removed, nil
}

// issueGatewayToken obtains a token of the gateway's ServiceAccount bound
// to a new Secret, as issueToken does for fedmesh's.
func (m *member) issueGatewayToken(ctx context.Context, expiration time.Duration) (string, error) {
	if _, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).Get(ctx, memberrbac.GatewayServiceAccount, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return "", fmt.Errorf("the member at %s has no ServiceAccount %s/%s: join it to the federation first (kubectl fedmesh join)", m.where, MemberNamespace, memberrbac.GatewayServiceAccount)
	} else if err != nil {
		return "", m.wrap(err)
	}
	secret, err := m.kube.CoreV1().Secrets(MemberNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: gatewayTokenPrefix,
			Labels:       map[string]string{partOfLabel: "fedmesh", componentLabel: gatewayComponent},
			Annotations: map[string]string{
				"kubernetes.io/description": "a token of " + memberrbac.GatewayServiceAccount + " is bound to this Secret: deleting it revokes the token",
			},
		},
		Type: corev1.SecretTypeOpaque,
	}, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		return "", m.wrap(err)
	}
	tr, err := m.kube.CoreV1().ServiceAccounts(MemberNamespace).CreateToken(ctx, memberrbac.GatewayServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To(int64(expiration / time.Second)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		_ = m.kube.CoreV1().Secrets(MemberNamespace).Delete(ctx, secret.Name, metav1.DeleteOptions{})
		return "", m.wrap(err)
	}
	return tr.Status.Token, nil
}

type gatewayKubeconfigOptions struct {
	*options
	memberServer    string
	tokenExpiration time.Duration
	outputFile      string
}

func newGatewayKubeconfigCommand(parent *options) *cobra.Command {
	o := &gatewayKubeconfigOptions{options: parent}
	cmd := &cobra.Command{
		Use:   "gateway-kubeconfig --member-kubeconfig FILE [--member-context CONTEXT] [--output-file FILE]",
		Short: "Print a kubeconfig for fedmesh-gateway in a joined member: a token that may only read what the gateway routes from",
		Long: `Print a kubeconfig with which fedmesh-gateway reads its member.

In the member (--member-kubeconfig, --member-context), join creates the
ServiceAccount fedmesh-system/fedmesh-gateway and the ClusterRole and
ClusterRoleBinding fedmesh:gateway, which may only get, list and watch
ServiceImports, GlobalTrafficPolicies, Ingresses, Services and EndpointSlices.
This command obtains a token of that ServiceAccount through the TokenRequest
API, valid for --token-expiration and bound to a new Secret of
fedmesh-system labelled app.kubernetes.io/component=fedmesh-gateway-token
(deleting the Secret revokes the token; unjoin deletes them all), and prints a
kubeconfig holding that token and the member's CA. It needs only the member,
not the control plane.`,
		Example: `  kubectl fedmesh gateway-kubeconfig --member-context cluster-1 --output-file gateway.kubeconfig
  fedmesh-gateway --kubeconfig gateway.kubeconfig --cluster-key default/default/default/cluster-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&o.memberServer, "member-server", "", "API server URL the gateway uses to reach its member, when the member's kubeconfig says one it cannot use")
	f.DurationVar(&o.tokenExpiration, "token-expiration", defaultGatewayTokenLife, "How long the token is valid")
	f.StringVar(&o.outputFile, "output-file", "", "Write the kubeconfig to this file (mode 0600) instead of standard output")
	return cmd
}

func (o *gatewayKubeconfigOptions) run(ctx context.Context) error {
	if o.tokenExpiration < 10*time.Minute {
		return fmt.Errorf("--token-expiration %s is shorter than the 10m Kubernetes accepts", o.tokenExpiration)
	}
	if o.memberServer != "" {
		if err := validServer(o.memberServer); err != nil {
			return err
		}
	}
	m, err := o.member.connect(ctx, deref(o.controlPlane.KubeConfig))
	if err != nil {
		return err
	}
	ep := m.endpoint
	if o.memberServer != "" {
		ep.Server = o.memberServer
	}
	token, err := m.issueGatewayToken(ctx, o.tokenExpiration)
	if err != nil {
		return err
	}
	kubeconfig, err := buildKubeconfig(memberrbac.GatewayServiceAccount, ep, token)
	if err != nil {
		return err
	}
	if o.outputFile != "" {
		return os.WriteFile(o.outputFile, kubeconfig, 0o600)
	}
	_, err = o.streams.Out.Write(kubeconfig)
	return err
}
