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
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

func TestExportedBackends(t *testing.T) {
	const (
		c1 = "default/default/default/cluster-1"
		c2 = "default/default/default/cluster-2"
		c3 = "default/default/default/cluster-3"
	)
	gw1 := v1alpha1.Endpoint{ClusterKey: c1, Target: v1alpha1.Target{Host: "gw-1", IP: "10.0.0.1", Port: 81, Path: "/cluster-1/httpbin"}}
	imp := &v1alpha1.ServiceImport{Spec: v1alpha1.ServiceImportSpec{Ports: []v1alpha1.ServicePort{
		{Port: 8080, Protocol: "TCP", Endpoints: []v1alpha1.Endpoint{
			gw1,
			{ClusterKey: c3, Target: v1alpha1.Target{IP: "10.0.0.3", Port: 83, Path: "/cluster-3/httpbin"}},
			gw1,
		}},
		{Port: 8080, Protocol: "UDP", Endpoints: []v1alpha1.Endpoint{gw1}},
		{Port: 9090, Protocol: "TCP", Endpoints: []v1alpha1.Endpoint{
			{ClusterKey: c1, Target: v1alpha1.Target{Host: "gw-1", Port: 81, Path: "/cluster-1/httpbin-9090"}},
		}},
	}}}
	for _, tc := range []struct {
		name    string
		imp     *v1alpha1.ServiceImport
		cluster string
		port    int32
		want    []Backend
	}{
		{name: "the host, once, whatever the protocols", imp: imp, cluster: c1, port: 8080,
			want: []Backend{{Host: "gw-1", Port: 81, Path: "/cluster-1/httpbin"}}},
		{name: "the IP without a host", imp: imp, cluster: c3, port: 8080,
			want: []Backend{{Host: "10.0.0.3", Port: 83, Path: "/cluster-3/httpbin"}}},
		{name: "each port its own", imp: imp, cluster: c1, port: 9090,
			want: []Backend{{Host: "gw-1", Port: 81, Path: "/cluster-1/httpbin-9090"}}},
		{name: "a port the cluster does not export", imp: imp, cluster: c3, port: 9090},
		{name: "a cluster that does not export", imp: imp, cluster: c2, port: 8080},
		{name: "no import", cluster: c1, port: 8080},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ExportedBackends(tc.imp, tc.cluster, tc.port))
		})
	}
}
