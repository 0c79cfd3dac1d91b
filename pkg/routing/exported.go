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

package routing

import (
	"slices"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// ExportedBackends returns the targets of cluster's own export of port in
// imp, once each, in the import's order. They stand for the cluster's local
// endpoints where only the control plane's view is known: the control plane
// sees no member's Pods, but a member whose export of a port is served has
// a Service for it, and, as far as the control plane can tell, serves it.
// fedmesh-apiserver's policy status uses them, and so does kubectl fedmesh
// status service when it is not given access to the member; the gateway,
// which sees its member's EndpointSlices, uses LocalBackends.
func ExportedBackends(imp *v1alpha1.ServiceImport, cluster string, port int32) []Backend {
	if imp == nil {
		return nil
	}
	var out []Backend
	for _, p := range imp.Spec.Ports {
		if p.Port != port {
			continue
		}
		for _, e := range p.Endpoints {
			if e.ClusterKey != cluster {
				continue
			}
			host := e.Target.Host
			if host == "" {
				host = e.Target.IP
			}
			b := Backend{Host: host, Port: e.Target.Port, Path: e.Target.Path}
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}
