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
)

type rotateOptions struct {
	*options
	name            string
	tokenExpiration time.Duration
	wait            bool
	timeout         time.Duration
}

func newRotateCommand(parent *options) *cobra.Command {
	o := &rotateOptions{options: parent}
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Issue a fresh token for a joined member and revoke the old ones",
		Long: `Issue a fresh token of the member's ServiceAccount fedmesh-system/fedmesh,
put it in the kubeconfig of the Cluster NAME (by server-side apply; the
server and CA stay as they are), then revoke the tokens issued before.`,
		Example: `  kubectl fedmesh rotate cluster-1 --member-context cluster-1 --wait`,
		Args:    exactlyOneName("rotate"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&o.tokenExpiration, "token-expiration", 8760*time.Hour, "How long the new token is valid")
	addWaitFlags(cmd, &o.wait, &o.timeout)
	return cmd
}

func (o *rotateOptions) run(ctx context.Context) error {
	if o.tokenExpiration < 10*time.Minute {
		return fmt.Errorf("--token-expiration %s is shorter than the 10m Kubernetes accepts", o.tokenExpiration)
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	c, err := client.FlomeshV1alpha1().Clusters().Get(ctx, o.name, metav1.GetOptions{})
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
	saUID, err := m.serviceAccountUID(ctx)
	if err != nil {
		return err
	}
	if !sameMember(c, saUID, m.endpoint.Server) {
		return fmt.Errorf("the Cluster %s is another member, at %s, than the member at %s", o.name, serverOf(c), m.where)
	}
	if saUID == "" {
		return fmt.Errorf("the member at %s has no ServiceAccount %s/%s: run 'kubectl fedmesh join %s' to create it", m.where, MemberNamespace, MemberServiceAccount, o.name)
	}
	ep, err := endpointOf(c.Spec.Kubeconfig)
	if err != nil {
		return fmt.Errorf("the Cluster %s: %w", o.name, err)
	}
	token, secret, err := m.issueToken(ctx, o.name, o.tokenExpiration)
	if err != nil {
		return err
	}
	kubeconfig, err := buildKubeconfig(o.name, ep, token)
	if err != nil {
		m.deleteToken(ctx, secret)
		return err
	}
	// The whole spec is applied: with server-side apply, a field the
	// plugin stops applying would be removed.
	spec := c.Spec
	spec.Kubeconfig = string(kubeconfig)
	applied, err := client.FlomeshV1alpha1().Clusters().Apply(ctx, applyConfig(o.name, spec), metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
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
	return waitReady(ctx, client, o.streams.Out, o.name, applied.Generation, o.timeout)
}
