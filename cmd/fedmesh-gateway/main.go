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

// Command fedmesh-gateway is fedmesh's reference data plane, one per
// member cluster: it routes requests as the federation's policies say,
// from its own member's objects only.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/fedmesh/fedmesh/pkg/gateway"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(newCommand(ctx, gateway.NewOptions())))
}

func newCommand(ctx context.Context, o *gateway.Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fedmesh-gateway --kubeconfig FILE --cluster-key REGION/ZONE/GROUP/NAME",
		Short: "Route requests between the member clusters of a fedmesh federation, as its policies say",
		Long: `fedmesh-gateway runs in a member cluster, one per member. It reads only
that member's objects, the ServiceImports, GlobalTrafficPolicies and Ingresses
that fedmesh-syncer writes there and the Services and EndpointSlices, so it
keeps routing while the control plane is down. It serves two listeners:

  ingress  the Ingresses of --ingress-class, at the Cluster's
           gatewayHost:gatewayPort: each path to its Service's ready
           endpoints, with the export's pathRewrite;
  egress   an HTTP forward proxy for the federated services
           (curl -x http://EGRESS http://NAME.NAMESPACE:PORT/), routed by
           the service's GlobalTrafficPolicy to the local endpoints or to
           the exporting members' gateways.

Every response a backend gave names the cluster that served in the header
Fedmesh-Served-By; a request with no route gets a 503 that says why. It is a
reference implementation of the policies' meaning, to run them and measure
them; FSM's pipy serves the same member objects in production.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	return cmd
}
