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
// Command fedmesh-apiserver serves the flomesh.io API as a Kubernetes
// aggregated API server.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/fedmesh/fedmesh/pkg/apiserver"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(newCommand(ctx, apiserver.NewOptions(os.Stdout, os.Stderr))))
}

func newCommand(ctx context.Context, o *apiserver.Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fedmesh-apiserver",
		Short: "Serve the flomesh.io federation API as an aggregated API server",
		Long: `fedmesh-apiserver serves flomesh.io/v1alpha1: Clusters and
GlobalTrafficPolicies stored in etcd. It is registered on a control-plane
cluster by an APIService. Without --etcd-servers it starts an embedded etcd
in --data-dir.`,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
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
