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
	"github.com/spf13/cobra"
	"io"
	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	fedac "github.com/fedmesh/fedmesh/generated/applyconfiguration/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/scheme"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// keyOf is the key of a Cluster, each empty part taken as its default.
func keyOf(name string, spec v1alpha1.ClusterSpec) string {
	return members.Key(name, &spec)
}

// applyConfig is the Cluster the plugin applies: the fields of spec that
// are set, and only those, so that the API server defaults the others.
//
// memberUID, the UID of the member's kube-system namespace, is recorded so
// that rotate can tell, through the administrator's own kubeconfig, that
// it talks to the same member.
func applyConfig(name string, spec v1alpha1.ClusterSpec, memberUID string) *fedac.ClusterApplyConfiguration {
	s := fedac.ClusterSpec().WithGatewayHost(spec.GatewayHost)
	if spec.Kubeconfig != "" {
		s.WithKubeconfig(spec.Kubeconfig)
	}
	if ref := spec.CredentialsSecretRef; ref != nil {
		s.WithCredentialsSecretRef(fedac.CredentialsSecretReference().WithName(ref.Name))
	}
	if spec.Region != "" {
		s.WithRegion(spec.Region)
	}
	if spec.Zone != "" {
		s.WithZone(spec.Zone)
	}
	if spec.Group != "" {
		s.WithGroup(spec.Group)
	}
	if spec.GatewayPort != 0 {
		s.WithGatewayPort(spec.GatewayPort)
	}
	c := fedac.Cluster(name).WithSpec(s)
	if memberUID != "" {
		c.WithAnnotations(map[string]string{MemberUIDAnnotation: memberUID})
	}
	return c
}

// MemberUIDAnnotation, on a Cluster, is the UID of the member's kube-system
// namespace, recorded by join: what the member is, whatever its address.
const MemberUIDAnnotation = "flomesh.io/member-uid"

// credentialsSecretApply is the control plane's Secret of a member's
// credentials, owned by its Cluster so that it goes with it.
func credentialsSecretApply(namespace, name string, ep endpoint, token string, owner *v1alpha1.Cluster) *corev1ac.SecretApplyConfiguration {
	s := corev1ac.Secret(name, namespace).
		WithLabels(map[string]string{managedByLabel: FieldManager}).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{
			members.SecretServerKey: []byte(ep.Server),
			members.SecretCAKey:     ep.CAData,
			members.SecretTokenKey:  []byte(token),
		})
	if owner != nil && owner.UID != "" {
		s.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(v1alpha1.SchemeGroupVersion.String()).WithKind("Cluster").
			WithName(owner.Name).WithUID(owner.UID))
	}
	return s
}

// sameServer compares two API server URLs, ignoring case and a trailing
// slash.
func sameServer(a, b string) bool {
	norm := func(s string) string { return strings.TrimRight(strings.ToLower(strings.TrimSpace(s)), "/") }
	return a != "" && norm(a) == norm(b)
}

// sameMember reports whether Cluster c is the member whose kube-system
// namespace has UID memberUID and whose API server is at one of servers.
// A Cluster that join recorded the UID on is that member exactly when the
// UIDs match; one registered otherwise (a kubeconfig pasted into a
// manifest) when its kubeconfig points at one of those servers. No
// credential in the Cluster is trusted to tell.
func sameMember(c *v1alpha1.Cluster, memberUID string, servers ...string) bool {
	if recorded := c.Annotations[MemberUIDAnnotation]; recorded != "" {
		return recorded == memberUID
	}
	ep, err := endpointOf(c.Spec.Kubeconfig)
	if err != nil {
		return false
	}
	for _, s := range servers {
		if sameServer(ep.Server, s) {
			return true
		}
	}
	return false
}

// whereIs says which member a Cluster is, for messages: the kube-system
// UID join recorded, or else where its kubeconfig points.
func whereIs(c *v1alpha1.Cluster) string {
	if uid := c.Annotations[MemberUIDAnnotation]; uid != "" {
		return "whose kube-system namespace has UID " + uid
	}
	ep, err := endpointOf(c.Spec.Kubeconfig)
	if err != nil || ep.Server == "" {
		return "at an address its kubeconfig does not tell"
	}
	return "at " + ep.Server
}

// checkMember fails when name is registered for another member than the
// one at servers, or when that member is registered under another name.
// It returns the Cluster name, when there is one.
func checkMember(ctx context.Context, client versioned.Interface, name, memberUID string, servers ...string) (*v1alpha1.Cluster, error) {
	list, err := client.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var existing *v1alpha1.Cluster
	for i := range list.Items {
		c := &list.Items[i]
		same := sameMember(c, memberUID, servers...)
		switch {
		case c.Name == name && !same:
			return nil, fmt.Errorf("the name %q is taken: Cluster %s (key %s) is another member, %s; choose another name, or unjoin that one first",
				name, c.Name, keyOf(c.Name, c.Spec), whereIs(c))
		case c.Name == name:
			existing = c
		case same:
			return nil, fmt.Errorf("the member at %s is already joined as Cluster %s (key %s); use that name, or unjoin it first",
				servers[0], c.Name, keyOf(c.Name, c.Spec))
		}
	}
	return existing, nil
}

// printCluster prints a Cluster with printFlags, its credentials redacted
// unless showSecrets.
func printCluster(w io.Writer, printFlags *genericclioptions.PrintFlags, c *v1alpha1.Cluster, showSecrets bool) error {
	c = c.DeepCopy()
	c.ManagedFields = nil
	if !showSecrets {
		c.Spec.Kubeconfig = redactKubeconfig(c.Spec.Kubeconfig)
	}
	printer, err := printFlags.ToPrinter()
	if err != nil {
		return err
	}
	// JSON and YAML escape control characters themselves; a template or
	// a name is printed as it is.
	return printer.PrintObj(c, escaping(w))
}

func newPrintFlags(operation string) *genericclioptions.PrintFlags {
	return genericclioptions.NewPrintFlags(operation).WithTypeSetter(scheme.Scheme)
}

func ready(c *v1alpha1.Cluster) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, "Ready")
}

// waitReady polls the Cluster until it is Ready, printing every change of
// its Ready condition, and fails with the condition's reason when it is
// not Ready within timeout. A condition fedmesh wrote for a generation of
// the Cluster older than generation (the one the plugin applied) is stale.
func waitReady(ctx context.Context, client versioned.Interface, w io.Writer, name string, generation int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w = escaping(w)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last, lastErr := "", error(nil)
	var lastCond *metav1.Condition
	for {
		c, err := client.FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			lastErr = nil
			cond := ready(c)
			fresh := cond != nil && cond.ObservedGeneration >= generation
			if cond != nil && cond.Status == metav1.ConditionTrue && fresh {
				fmt.Fprintf(w, "cluster %s is Ready: key %s, Kubernetes %s\n", name, cell(keyOf(c.Name, c.Spec)), cell(c.Status.KubernetesVersion))
				return nil
			}
			now := "waiting for fedmesh to connect with the new kubeconfig"
			if cond != nil && fresh {
				lastCond = cond
				now = fmt.Sprintf("Ready=%s %s: %s", cond.Status, cell(cond.Reason), cell(cond.Message))
			}
			if now != last {
				fmt.Fprintf(w, "waiting for cluster %s: %s\n", name, now)
				last = now
			}
		case apierrors.IsNotFound(err):
			return fmt.Errorf("cluster %q was deleted while waiting for it", name)
		default:
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("cluster %q not Ready after %s: %v", name, timeout, lastErr)
			}
			if lastCond != nil {
				return fmt.Errorf("cluster %q not Ready after %s: %s: %s", name, timeout, lastCond.Reason, lastCond.Message)
			}
			return fmt.Errorf("cluster %q not Ready after %s: fedmesh has not reported on it", name, timeout)
		case <-tick.C:
		}
	}
}

// Values of --credentials.
const (
	credentialsSecret = "secret"
	credentialsInline = "inline"
)

func addCredentialsFlags(cmd *cobra.Command, credentials, namespace *string) {
	cmd.Flags().StringVar(credentials, "credentials", credentialsSecret,
		`Where the Cluster's credentials go: "secret" (a Secret of --secrets-namespace, which only fedmesh reads) or "inline" `+
			`(a kubeconfig in the Cluster, which whoever may read Clusters may read)`)
	cmd.Flags().StringVar(namespace, "secrets-namespace", members.DefaultSecretsNamespace,
		"Namespace of the control plane where fedmesh reads members' credentials (fedmesh's --member-secrets-namespace)")
}

func validCredentials(credentials string) error {
	if credentials != credentialsSecret && credentials != credentialsInline {
		return fmt.Errorf("--credentials must be %q or %q, not %q", credentialsSecret, credentialsInline, credentials)
	}
	return nil
}

// applySecret server-side applies a credentials Secret on the control
// plane.
func applySecret(ctx context.Context, cpConfig *rest.Config, secret *corev1ac.SecretApplyConfiguration, opts metav1.ApplyOptions) error {
	kube, err := kubernetes.NewForConfig(cpConfig)
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Secrets(*secret.Namespace).Apply(ctx, secret, opts)
	if err != nil {
		return fmt.Errorf("writing the credentials Secret %s/%s: %w", *secret.Namespace, *secret.Name, err)
	}
	return nil
}
