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

// Package fedmesh is the kubectl plugin "kubectl fedmesh": it joins member
// clusters to a fedmesh federation with an identity that holds only the
// permissions fedmesh needs there, rotates and removes that identity, and
// shows the federation's state.
//
// The control plane is reached with the standard kubeconfig flags
// (--kubeconfig, --context, ...); a member with --member-kubeconfig and
// --member-context. The member's admin credentials are used by the plugin
// only: what the control plane stores is a token of the ServiceAccount
// fedmesh-system/fedmesh of the member.
package fedmesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
)

// FieldManager is the field manager of everything the plugin applies.
const FieldManager = "kubectl-fedmesh"

// defaultRequestTimeout bounds every request when --request-timeout is not
// set: an unreachable cluster is an error after this long, not a hang.
const defaultRequestTimeout = 10 * time.Second

// Run runs the plugin with args (without the program name) and returns
// its exit code. Errors are printed as one line on streams.ErrOut.
func Run(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	logTo(streams.ErrOut)
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		printError(streams.ErrOut, err)
		return 1
	}
	return 0
}

// printError prints err the way kubectl does, on one line. An error may
// quote what a member or the control plane answered: it is escaped.
func printError(w io.Writer, err error) {
	w = escaping(w)
	msg := strings.TrimSpace(err.Error())
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	if !strings.HasPrefix(msg, "error: ") {
		msg = "error: " + msg
	}
	fmt.Fprintln(w, msg)
}

// options are the flags every command shares.
type options struct {
	// streams escape what is written to Out and ErrOut (see escaping):
	// every line the commands print goes through them.
	streams genericiooptions.IOStreams
	// controlPlane are the standard kubeconfig flags, for the control plane.
	controlPlane *genericclioptions.ConfigFlags
	member       memberFlags
}

// NewCommand returns the root command of the plugin.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	streams.Out, streams.ErrOut = escaping(streams.Out), escaping(streams.ErrOut)
	o := &options{streams: streams, controlPlane: genericclioptions.NewConfigFlags(true)}
	o.member.warnings = streams.ErrOut
	cmd := &cobra.Command{
		Use:   "kubectl-fedmesh",
		Short: "Join, rotate, unjoin and inspect the member clusters of a fedmesh federation",
		Long: `kubectl fedmesh joins member clusters to a fedmesh federation and shows its state.

The control plane (where fedmesh-apiserver is registered) is the cluster of the
standard kubeconfig flags (--kubeconfig, --context, ...). A member is the
cluster of --member-kubeconfig and --member-context (which default to the
standard kubeconfig loading rules and that kubeconfig's current context).

join creates, in the member, the ServiceAccount fedmesh-system/fedmesh and the
ClusterRole and ClusterRoleBinding fedmesh:member that hold exactly the
permissions fedmesh-apiserver and fedmesh-syncer need there, issues a token for
it, and registers the member on the control plane with a kubeconfig holding
only that token. No admin credential of the member leaves this machine.`,
		Example: `  # Join cluster-1 with the context cluster-1 of the same kubeconfig, and wait until Ready
  kubectl fedmesh join cluster-1 --member-context cluster-1 --gateway-host 10.0.0.11 --gateway-port 80 --wait

  # See the federation
  kubectl fedmesh status
  kubectl fedmesh status service httpbin/httpbin`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl fedmesh"},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for \"kubectl fedmesh\"; see 'kubectl fedmesh --help'", args[0])
			}
			return cmd.Help()
		},
		Args: cobra.ArbitraryArgs,
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v; see '%s --help'", err, c.CommandPath())
	})
	o.controlPlane.AddFlags(cmd.PersistentFlags())
	o.member.addFlags(cmd)
	cmd.AddCommand(newJoinCommand(o), newRotateCommand(o), newUnjoinCommand(o), newStatusCommand(o), newGatewayKubeconfigCommand(o))
	return cmd
}

// controlPlaneClient returns a client of fedmesh's API on the control
// plane, after checking that the kubeconfig and context exist.
func (o *options) controlPlaneClient() (versioned.Interface, *rest.Config, error) {
	loader := o.controlPlane.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("control-plane kubeconfig: %w", err)
	}
	if err := checkContext("control-plane kubeconfig", "--kubeconfig or --context", raw.Contexts, raw.CurrentContext, deref(o.controlPlane.Context)); err != nil {
		return nil, nil, err
	}
	cfg, err := o.controlPlane.ToRESTConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("control-plane kubeconfig: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultRequestTimeout
	}
	cfg.UserAgent = FieldManager
	cfg.WarningHandler = warningsTo(o.streams.ErrOut)
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("control-plane kubeconfig: %w", err)
	}
	return client, cfg, nil
}

// controlPlaneError words an error of a request to the control plane.
func controlPlaneError(cfg *rest.Config, err error) error {
	if reason := unreachable(err); reason != "" {
		return fmt.Errorf("cannot reach the control plane at %s: %s", cfg.Host, reason)
	}
	return err
}

// unreachable returns why a request got no answer, or "" when err is an
// answer (an API error) or no error.
func unreachable(err error) string {
	if err == nil {
		return ""
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if uerr.Timeout() {
			return "no answer in time"
		}
		return uerr.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
