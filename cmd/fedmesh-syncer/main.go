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

// Command fedmesh-syncer makes the member clusters of a fedmesh federation
// match the control plane: it writes ServiceImports, GlobalTrafficPolicies,
// Ingresses and export conditions into the members.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/fedmesh/fedmesh/pkg/syncer"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(newCommand(ctx, syncer.NewServerOptions())))
}

func newCommand(ctx context.Context, o *syncer.ServerOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fedmesh-syncer",
		Short: "Push the federation's state from the control plane into the member clusters",
		Long: `fedmesh-syncer runs on the control plane. It reads Clusters,
GlobalTrafficPolicies and ServiceImports through the flomesh.io API that
fedmesh-apiserver serves, and writes into every member cluster the member
CRDs, the ServiceImports of the services the other members export, the
policies of the services it imports or hosts, the Ingresses that expose its
own exports, and the Valid and Conflict conditions of those exports. Of
several replicas, the one holding the Lease writes.`,
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
