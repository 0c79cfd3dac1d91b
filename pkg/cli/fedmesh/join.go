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
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// Values of --dry-run.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

type joinOptions struct {
	*options
	printFlags *genericclioptions.PrintFlags

	name                string
	spec                v1alpha1.ClusterSpec
	credentials         string
	secretsNamespace    string
	memberServer        string
	tokenExpiration     time.Duration
	wait                bool
	timeout             time.Duration
	dryRun              string
	showSecrets         bool
	gatewayPortExplicit bool
	ingressClass        string
}

func newJoinCommand(parent *options) *cobra.Command {
	o := &joinOptions{options: parent, printFlags: newPrintFlags("joined")}
	cmd := &cobra.Command{
		Use:   "join NAME --gateway-host HOST [--gateway-port PORT] [--region R --zone Z --group G] [--member-server URL] [--wait]",
		Short: "Join a member cluster to the federation, with an identity that holds only what fedmesh needs",
		Long: `Join a member cluster to the federation as the Cluster NAME.

In the member (--member-kubeconfig, --member-context), join creates or updates
the namespace fedmesh-system, the ServiceAccount fedmesh-system/fedmesh, and the
ClusterRole and ClusterRoleBinding fedmesh:member, which hold exactly the
permissions fedmesh-apiserver and fedmesh-syncer need there, and the
ServiceAccount fedmesh-system/fedmesh-gateway with the ClusterRole and
ClusterRoleBinding fedmesh:gateway, which may only read what fedmesh-gateway
routes from (kubectl fedmesh gateway-kubeconfig issues its tokens). It installs the
CRDs ServiceExport, ServiceImport and GlobalTrafficPolicy, which fedmesh's
identity may only read and upgrade, and the ValidatingAdmissionPolicies
fedmesh-confine and fedmesh-ownership with their bindings: fedmesh may change
only the objects it created, write only Ingresses of --ingress-class named
fedmesh-*, and nobody else may label an object as fedmesh's. It obtains a token
of that ServiceAccount through the TokenRequest API, valid for
--token-expiration and bound to a Secret of fedmesh-system (deleting the Secret
revokes the token), and builds a kubeconfig holding that token and the member's
CA. On the control plane it applies the Cluster NAME by server-side apply,
and, unless --credentials=inline, puts the member's server, CA and token in
the Secret NAME of --secrets-namespace, which only fedmesh reads, so that the
Cluster itself carries no credential. It records the UID of the member's
kube-system namespace on the Cluster, so that rotate can tell it is the same
member. Then it revokes the tokens of earlier joins. Running join again is safe: it
restores the member's identity and issues a fresh token.

If the namespace fedmesh-system is still terminating (right after an unjoin),
join first waits, up to --timeout, until the member's namespace controller has
removed it; it writes nothing before.

--dry-run=client prints the Cluster instead of applying it. The member is still
prepared and a token issued, since the Cluster carries it; the token is shown
as <redacted> unless --show-secrets.`,
		Example: `  # Join the member of context cluster-1, reachable from the other members at 10.0.0.11:80
  kubectl fedmesh join cluster-1 --member-context cluster-1 --gateway-host 10.0.0.11 --gateway-port 80 --wait

  # A member whose kubeconfig says https://0.0.0.0:6443
  kubectl fedmesh join cluster-2 --member-kubeconfig cluster-2.kubeconfig --member-server https://10.0.0.12:6443 --gateway-host 10.0.0.12

  # See the Cluster that would be applied
  kubectl fedmesh join cluster-3 --member-context cluster-3 --gateway-host 10.0.0.13 --dry-run=client -o yaml`,
		Args: exactlyOneName("join"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			o.gatewayPortExplicit = cmd.Flags().Changed("gateway-port")
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.spec.GatewayHost, "gateway-host", "", "Address (IP or DNS name) of the member's ingress gateway, as the other members reach it (required)")
	f.Int32Var(&o.spec.GatewayPort, "gateway-port", 80, "Port of the member's ingress gateway")
	f.StringVar(&o.spec.Region, "region", "", "Region of the member, part of its key (default \"default\")")
	f.StringVar(&o.spec.Zone, "zone", "", "Zone of the member, part of its key (default \"default\")")
	f.StringVar(&o.spec.Group, "group", "", "Group of the member, part of its key (default \"default\")")
	f.StringVar(&o.memberServer, "member-server", "", "API server URL fedmesh uses to reach the member, when the member's kubeconfig says one it cannot use (such as https://0.0.0.0:6443)")
	addCredentialsFlags(cmd, &o.credentials, &o.secretsNamespace)
	f.DurationVar(&o.tokenExpiration, "token-expiration", 8760*time.Hour, "How long the member's token for fedmesh is valid; renew it with 'kubectl fedmesh rotate'")
	addWaitFlags(cmd, &o.wait, &o.timeout)
	f.Lookup("timeout").Usage = "How long to wait for a terminating namespace " + MemberNamespace + " to go, and with --wait for the Cluster to be Ready, before failing with the reason"
	f.StringVar(&o.dryRun, "dry-run", dryRunNone, `"none", "client" (print the Cluster instead of applying it) or "server" (submit it without persisting it)`)
	f.Lookup("dry-run").NoOptDefVal = dryRunClient
	f.StringVar(&o.ingressClass, "ingress-class", "pipy", "Class of the Ingresses fedmesh-syncer writes into the member (its --ingress-class); the member's admission policy lets fedmesh write no other")
	f.BoolVar(&o.showSecrets, "show-secrets", false, "Print the token in the Cluster's kubeconfig instead of "+Redacted)
	o.printFlags.AddFlags(cmd)
	return cmd
}

func addWaitFlags(cmd *cobra.Command, wait *bool, timeout *time.Duration) {
	cmd.Flags().BoolVar(wait, "wait", false, "Wait until fedmesh reports the Cluster Ready, showing its progress")
	cmd.Flags().DurationVar(timeout, "timeout", 2*time.Minute, "How long --wait waits before failing with the Ready condition's reason")
}

// exactlyOneName accepts exactly one argument, a valid Cluster name.
func exactlyOneName(verb string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s needs exactly one argument, the name of the Cluster; see '%s --help'", verb, cmd.CommandPath())
		}
		if errs := validation.IsDNS1123Label(args[0]); len(errs) > 0 {
			return fmt.Errorf("invalid cluster name %q: %s", args[0], strings.Join(errs, "; "))
		}
		return nil
	}
}

func (o *joinOptions) validate() error {
	switch o.dryRun {
	case dryRunNone, dryRunClient, dryRunServer:
	default:
		return fmt.Errorf(`--dry-run must be "none", "client" or "server", not %q`, o.dryRun)
	}
	if o.spec.GatewayHost == "" {
		return fmt.Errorf("--gateway-host is required: the address at which the other members reach this member's gateway")
	}
	if o.spec.GatewayPort < 1 || o.spec.GatewayPort > 65535 {
		return fmt.Errorf("--gateway-port %d is not a port", o.spec.GatewayPort)
	}
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
	if o.wait && o.dryRun != dryRunNone {
		return fmt.Errorf("--wait and --dry-run exclude each other")
	}
	return nil
}

func (o *joinOptions) run(ctx context.Context) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.dryRun == dryRunClient {
		if err := o.printFlags.Complete("%s (dry run)"); err != nil {
			return err
		}
	} else if o.dryRun == dryRunServer {
		if err := o.printFlags.Complete("%s (server dry run)"); err != nil {
			return err
		}
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	m, err := o.member.connect(ctx, deref(o.controlPlane.KubeConfig))
	if err != nil {
		return err
	}
	ep := m.endpoint
	if o.memberServer != "" {
		ep.Server = o.memberServer
	}
	memberUID, err := m.clusterUID(ctx)
	if err != nil {
		return err
	}
	// Everything that can refuse the join is checked before anything is
	// written in the member.
	if _, err := checkMember(ctx, client, o.name, memberUID, ep.Server, m.endpoint.Server); err != nil {
		return controlPlaneError(cpConfig, err)
	}
	// A namespace being deleted (by an unjoin, say) takes no new object
	// until it is gone: wait for it rather than fail half-way.
	waited, err := m.awaitNamespaceGone(ctx, progressWriter(o.streams.Out, o.streams.ErrOut, o.printFlags), o.timeout)
	if err != nil {
		return err
	}
	if waited {
		// Check again with what the control plane holds now.
		if _, err := checkMember(ctx, client, o.name, memberUID, ep.Server, m.endpoint.Server); err != nil {
			return controlPlaneError(cpConfig, err)
		}
	}
	if err := m.ensureIdentity(ctx); err != nil {
		return err
	}
	if err := m.ensureGatewayIdentity(ctx); err != nil {
		return err
	}
	if err := m.installCRDs(ctx); err != nil {
		return err
	}
	if err := m.ensurePolicies(ctx, o.ingressClass); err != nil {
		return err
	}
	token, secret, err := m.issueToken(ctx, o.name, o.tokenExpiration)
	if err != nil {
		return err
	}
	spec := o.spec
	if o.credentials == credentialsInline {
		kubeconfig, err := buildKubeconfig(o.name, ep, token)
		if err != nil {
			return err
		}
		spec.Kubeconfig = string(kubeconfig)
	} else {
		spec.CredentialsSecretRef = &v1alpha1.CredentialsSecretReference{Name: o.name}
	}
	if o.dryRun == dryRunClient {
		c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: o.name}, Spec: spec}
		return printCluster(o.streams.Out, o.printFlags, c, o.showSecrets)
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if o.dryRun == dryRunServer {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	applied, err := client.FlomeshV1alpha1().Clusters().Apply(ctx, applyConfig(o.name, spec, memberUID), opts)
	if err == nil && spec.CredentialsSecretRef != nil {
		// The Cluster first, so that its Secret can be owned by it and go
		// with it; fedmesh waits for the Secret meanwhile.
		err = applySecret(ctx, cpConfig, credentialsSecretApply(o.secretsNamespace, o.name, ep, token, applied), opts)
	}
	if err != nil || o.dryRun == dryRunServer {
		// No Cluster holds the new token: it goes. The tokens of earlier
		// joins stay, as a Cluster may hold one.
		m.deleteToken(ctx, secret)
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	if err := printCluster(o.streams.Out, o.printFlags, applied, o.showSecrets); err != nil {
		return err
	}
	if o.dryRun == dryRunServer {
		return nil
	}
	if _, err := m.revokeTokens(ctx, secret); err != nil {
		return fmt.Errorf("the Cluster is applied, but revoking the earlier tokens failed: %w", err)
	}
	if !o.wait {
		return nil
	}
	return waitReady(ctx, client, progressWriter(o.streams.Out, o.streams.ErrOut, o.printFlags), o.name, applied.Generation, o.timeout)
}

// progressWriter is where --wait reports: stdout, unless stdout carries an
// object for a machine to read.
func progressWriter(out, errOut io.Writer, printFlags *genericclioptions.PrintFlags) io.Writer {
	if printFlags.OutputFormat != nil && *printFlags.OutputFormat != "" {
		return errOut
	}
	return out
}
