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
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/fedmesh/fedmesh/pkg/members"
	"github.com/fedmesh/fedmesh/pkg/syncer"
)

type unjoinOptions struct {
	*options
	name             string
	cleanupTimeout   time.Duration
	secretsNamespace string
}

func newUnjoinCommand(parent *options) *cobra.Command {
	o := &unjoinOptions{options: parent}
	cmd := &cobra.Command{
		Use:   "unjoin NAME",
		Short: "Remove a member from the federation, and fedmesh's identity from the member",
		Long: `Delete the Cluster NAME on the control plane, and its credentials Secret,
then remove from the member
what join created there: the ValidatingAdmissionPolicies fedmesh-confine and
fedmesh-ownership and their bindings, the ClusterRoleBindings and ClusterRoles fedmesh:member
and fedmesh:gateway, the token Secrets and the ServiceAccounts fedmesh-system/fedmesh and
fedmesh-system/fedmesh-gateway, and the
namespace fedmesh-system when join created it. The CRDs stay: deleting them
would delete the member's ServiceExports.

The control plane refuses to delete a Cluster that a GlobalTrafficPolicy still
targets; unjoin then stops, says why, and changes nothing in the member.

Between the two, unjoin gives fedmesh-syncer up to --cleanup-timeout to remove
the ServiceImports, GlobalTrafficPolicies and Ingresses it wrote into the
member, and removes what is left itself.`,
		Example: `  kubectl fedmesh unjoin cluster-3 --member-context cluster-3`,
		Args:    exactlyOneName("unjoin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.secretsNamespace, "secrets-namespace", members.DefaultSecretsNamespace,
		"Namespace of the control plane where fedmesh reads members' credentials (fedmesh's --member-secrets-namespace)")
	cmd.Flags().DurationVar(&o.cleanupTimeout, "cleanup-timeout", 20*time.Second, "How long to let fedmesh-syncer remove what it wrote into the member")
	return cmd
}

func (o *unjoinOptions) run(ctx context.Context) error {
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	c, err := client.FlomeshV1alpha1().Clusters().Get(ctx, o.name, metav1.GetOptions{})
	found := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
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
	if found {
		if !sameMember(c, memberUID, m.endpoint.Server) {
			return fmt.Errorf("the Cluster %s is another member, %s, than the member at %s; nothing changed", o.name, whereIs(c), m.where)
		}
		if err := client.FlomeshV1alpha1().Clusters().Delete(ctx, o.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			// The API's own message, such as the admission's refusal.
			return controlPlaneError(cpConfig, err)
		}
		fmt.Fprintf(o.streams.Out, "cluster.flomesh.io/%s deleted\n", o.name)
		if ref := c.Spec.CredentialsSecretRef; ref != nil {
			// Owned by the Cluster, the Secret would go with it by garbage
			// collection; the credentials go now.
			kube, err := kubernetes.NewForConfig(cpConfig)
			if err != nil {
				return err
			}
			err = kube.CoreV1().Secrets(o.secretsNamespace).Delete(ctx, ref.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return controlPlaneError(cpConfig, fmt.Errorf("deleting the credentials Secret %s/%s: %w", o.secretsNamespace, ref.Name, err))
			}
			fmt.Fprintf(o.streams.Out, "secret/%s deleted from %s\n", ref.Name, o.secretsNamespace)
		}
	} else {
		fmt.Fprintf(o.streams.Out, "no Cluster %s on the control plane; cleaning the member\n", o.name)
	}
	if n, err := o.syncerLeftovers(ctx, m); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(o.streams.Out, "removed %d object(s) fedmesh-syncer had written into the member\n", n)
	}
	removed, err := m.removeIdentity(ctx)
	if len(removed) > 0 {
		fmt.Fprintf(o.streams.Out, "removed from the member: %s\n", strings.Join(removed, ", "))
	}
	return err
}

// syncerLeftovers waits for fedmesh-syncer to remove what it wrote into
// the member (it does so when a Cluster goes, with the identity that is
// about to be removed), and removes what is left after cleanupTimeout, as
// the member's admin, with the syncer's own cleanup (syncer.RemoveWritten).
// It returns how many objects it removed itself.
func (o *unjoinOptions) syncerLeftovers(ctx context.Context, m *member) (int, error) {
	left, err := syncer.ListWritten(ctx, m.fedmesh, m.kube)
	if apierrors.IsNotFound(err) {
		// The member has no CRDs: the syncer never wrote there.
		return 0, nil
	}
	if err != nil {
		return 0, m.wrap(err)
	}
	if len(left) == 0 {
		return 0, nil
	}
	fmt.Fprintf(o.streams.Out, "waiting up to %s for fedmesh-syncer to remove the %d object(s) it wrote into the member\n", o.cleanupTimeout, len(left))
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.cleanupTimeout, false, func(ctx context.Context) (bool, error) {
		l, err := syncer.ListWritten(ctx, m.fedmesh, m.kube)
		if err != nil {
			return false, nil
		}
		left = l
		return len(left) == 0, nil
	})
	if len(left) == 0 {
		return 0, nil
	}
	removed := 0
	err = syncer.RemoveWritten(ctx, m.fedmesh, m.kube, func(_, verb, _, _ string) {
		if verb == "delete" {
			removed++
		}
	})
	if err != nil {
		return removed, m.wrap(err)
	}
	return removed, nil
}
