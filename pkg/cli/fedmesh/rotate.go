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
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

type rotateOptions struct {
	*options
	name             string
	memberServer     string
	credentials      string
	secretsNamespace string
	tokenExpiration  time.Duration
	wait             bool
	timeout          time.Duration
}

func newRotateCommand(parent *options) *cobra.Command {
	o := &rotateOptions{options: parent}
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Issue a fresh token for a joined member and revoke the old ones",
		Long: `Issue a fresh token of the member's ServiceAccount fedmesh-system/fedmesh and
give it to the Cluster NAME, then revoke the tokens issued before.

rotate trusts nothing it reads from the Cluster, which whoever may write
Clusters could have changed: it reaches the member through your member
kubeconfig (--member-kubeconfig, --member-context), checks that the member's
kube-system namespace has the UID join recorded on the Cluster, and refuses on
a mismatch. The server and CA it writes are those of your member kubeconfig
(or --member-server), never the Cluster's. Unless --credentials=inline, the
credentials go into the Secret NAME of --secrets-namespace and the Cluster
names it, so a Cluster registered with an inline kubeconfig moves to a Secret.`,
		Example: `  kubectl fedmesh rotate cluster-1 --member-context cluster-1 --wait`,
		Args:    exactlyOneName("rotate"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.memberServer, "member-server", "", "API server URL fedmesh uses to reach the member, when the member's kubeconfig says one it cannot use")
	addCredentialsFlags(cmd, &o.credentials, &o.secretsNamespace)
	cmd.Flags().DurationVar(&o.tokenExpiration, "token-expiration", 8760*time.Hour, "How long the new token is valid")
	addWaitFlags(cmd, &o.wait, &o.timeout)
	return cmd
}

func (o *rotateOptions) run(ctx context.Context) error {
	if o.tokenExpiration < 10*time.Minute {
		return fmt.Errorf("--token-expiration %s is shorter than the 10m Kubernetes accepts", o.tokenExpiration)
	}
	if err := validCredentials(o.credentials); err != nil {
		return err
	}
	if o.memberServer != "" {
		if err := validServer(o.memberServer); err != nil {
			return err
		}
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	clusters := client.FlomeshV1alpha1().Clusters()
	c, err := clusters.Get(ctx, o.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no Cluster %q on the control plane: join it first", o.name)
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	m, err := o.member.connect(ctx, deref(o.controlPlane.KubeConfig))
	if err != nil {
		return err
	}
	memberUID, err := m.clusterUID(ctx)
	if err != nil {
		return err
	}
	// The member is recognised by what it is (the UID join recorded), as
	// seen through the administrator's kubeconfig; a Cluster join did not
	// record one must at least point at the same server.
	ep := m.endpoint
	if o.memberServer != "" {
		ep.Server = o.memberServer
	}
	if recorded := c.Annotations[MemberUIDAnnotation]; recorded != "" && recorded != memberUID {
		return fmt.Errorf("refusing to rotate: the Cluster %s was joined for another member than the one at %s "+
			"(its kube-system namespace has UID %s, the Cluster records %s); if the Cluster was tampered with, delete it and join again",
			o.name, m.where, memberUID, recorded)
	} else if recorded == "" && !sameMember(c, memberUID, ep.Server, m.endpoint.Server) {
		return fmt.Errorf("refusing to rotate: the Cluster %s is another member, %s, than the member at %s", o.name, whereIs(c), m.where)
	}
	saUID, err := m.serviceAccountUID(ctx)
	if err != nil {
		return err
	}
	if saUID == "" {
		return fmt.Errorf("the member at %s has no ServiceAccount %s/%s: run 'kubectl fedmesh join %s' to create it", m.where, MemberNamespace, MemberServiceAccount, o.name)
	}
	token, secret, err := m.issueToken(ctx, o.name, o.tokenExpiration)
	if err != nil {
		return err
	}
	updated, err := o.give(ctx, clusters, cpConfig, c, ep, token, memberUID)
	if err != nil {
		m.deleteToken(ctx, secret)
		return controlPlaneError(cpConfig, err)
	}
	revoked, err := m.revokeTokens(ctx, secret)
	if err != nil {
		return fmt.Errorf("the new token is in Cluster %s, but revoking the old ones failed: %w", o.name, err)
	}
	fmt.Fprintf(o.streams.Out, "cluster.flomesh.io/%s rotated: new token valid for %s, %d old token(s) revoked\n", o.name, o.tokenExpiration, len(revoked))
	if !o.wait {
		return nil
	}
	return waitReady(ctx, client, o.streams.Out, o.name, updated.Generation, o.timeout)
}

// give puts the new credentials where the Cluster will read them. The
// Cluster is updated, not applied, so that an inline kubeconfig written by
// another field manager (kubectl apply of the walkthrough's manifest) is
// replaced all the same; the update is conditional on the Cluster read.
func (o *rotateOptions) give(ctx context.Context, clusters clusterWriter, cpConfig *rest.Config, c *v1alpha1.Cluster, ep endpoint, token, memberUID string) (*v1alpha1.Cluster, error) {
	c = c.DeepCopy()
	unchanged := c.Annotations[MemberUIDAnnotation] == memberUID
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[MemberUIDAnnotation] = memberUID
	if o.credentials == credentialsInline {
		kubeconfig, err := buildKubeconfig(o.name, ep, token)
		if err != nil {
			return nil, err
		}
		c.Spec.Kubeconfig, c.Spec.CredentialsSecretRef = string(kubeconfig), nil
		return clusters.Update(ctx, c, metav1.UpdateOptions{FieldManager: FieldManager})
	}
	// The Secret first: the Cluster that names it finds it in place.
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if err := applySecret(ctx, cpConfig, credentialsSecretApply(o.secretsNamespace, o.name, ep, token, c), apply); err != nil {
		return nil, err
	}
	if unchanged && c.Spec.Kubeconfig == "" && c.Spec.CredentialsSecretRef != nil && c.Spec.CredentialsSecretRef.Name == o.name {
		return c, nil
	}
	c.Spec.Kubeconfig, c.Spec.CredentialsSecretRef = "", &v1alpha1.CredentialsSecretReference{Name: o.name}
	return clusters.Update(ctx, c, metav1.UpdateOptions{FieldManager: FieldManager})
}

// clusterWriter updates Clusters.
type clusterWriter interface {
	Update(ctx context.Context, c *v1alpha1.Cluster, opts metav1.UpdateOptions) (*v1alpha1.Cluster, error)
}
