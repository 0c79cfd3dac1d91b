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

package v1alpha1_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/install"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// The defaults are exercised through a scheme, as the API server applies
// them, so a defaulter that is written but not registered fails here.
func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return scheme
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   runtime.Object
		want runtime.Object
	}{
		{
			name: "cluster unset",
			in:   &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{GatewayHost: "192.168.1.110"}},
			want: &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{
				Region: "default", Zone: "default", Group: "default",
				GatewayHost: "192.168.1.110", GatewayPort: 80,
			}},
		},
		{
			name: "cluster set",
			in: &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{
				Region: "us-east-1", Zone: "az-1", Group: "prod", GatewayPort: 81,
			}},
			want: &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{
				Region: "us-east-1", Zone: "az-1", Group: "prod", GatewayPort: 81,
			}},
		},
		{
			name: "cluster partly set",
			in:   &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{Zone: "az-1"}},
			want: &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{
				Region: "default", Zone: "az-1", Group: "default", GatewayPort: 80,
			}},
		},
		{
			name: "cluster list items",
			in:   &v1alpha1.ClusterList{Items: []v1alpha1.Cluster{{}}},
			want: &v1alpha1.ClusterList{Items: []v1alpha1.Cluster{{Spec: v1alpha1.ClusterSpec{
				Region: "default", Zone: "default", Group: "default", GatewayPort: 80,
			}}}},
		},
		{
			name: "policy unset",
			in:   &v1alpha1.GlobalTrafficPolicy{},
			want: &v1alpha1.GlobalTrafficPolicy{Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.LocalityLbType}},
		},
		{
			name: "policy set",
			in:   &v1alpha1.GlobalTrafficPolicy{Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType}},
			want: &v1alpha1.GlobalTrafficPolicy{Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType}},
		},
		{
			name: "import unset",
			in:   &v1alpha1.ServiceImport{},
			want: &v1alpha1.ServiceImport{Spec: v1alpha1.ServiceImportSpec{Type: v1alpha1.ClusterSetIP}},
		},
		{
			name: "import set",
			in:   &v1alpha1.ServiceImport{Spec: v1alpha1.ServiceImportSpec{Type: v1alpha1.Headless}},
			want: &v1alpha1.ServiceImport{Spec: v1alpha1.ServiceImportSpec{Type: v1alpha1.Headless}},
		},
		{
			name: "export unset",
			in: &v1alpha1.ServiceExport{Spec: v1alpha1.ServiceExportSpec{
				Rules: []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/a"}, {PortNumber: 9090}},
			}},
			want: &v1alpha1.ServiceExport{Spec: v1alpha1.ServiceExportSpec{
				LoadBalancer: v1alpha1.RoundRobinLoadBalancer,
				Rules: []v1alpha1.ServiceExportRule{
					{PortNumber: 8080, Path: "/a", PathType: v1alpha1.PathTypePrefix},
					{PortNumber: 9090, PathType: v1alpha1.PathTypePrefix},
				},
			}},
		},
		{
			name: "export set",
			in: &v1alpha1.ServiceExport{Spec: v1alpha1.ServiceExportSpec{
				LoadBalancer: v1alpha1.HashingLoadBalancer,
				Rules:        []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/a", PathType: v1alpha1.PathTypeExact}},
			}},
			want: &v1alpha1.ServiceExport{Spec: v1alpha1.ServiceExportSpec{
				LoadBalancer: v1alpha1.HashingLoadBalancer,
				Rules:        []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/a", PathType: v1alpha1.PathTypeExact}},
			}},
		},
		{
			name: "export without rules",
			in:   &v1alpha1.ServiceExport{},
			want: &v1alpha1.ServiceExport{Spec: v1alpha1.ServiceExportSpec{LoadBalancer: v1alpha1.RoundRobinLoadBalancer}},
		},
	}
	scheme := newScheme(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.DeepCopyObject()
			scheme.Default(got)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestDefaultsOnDecode checks that decoding, the path every request takes,
// applies the defaults before conversion to the internal version.
func TestDefaultsOnDecode(t *testing.T) {
	decoder := serializer.NewCodecFactory(newScheme(t)).UniversalDecoder()
	obj, _, err := decoder.Decode([]byte(`{"apiVersion":"flomesh.io/v1alpha1","kind":"Cluster","metadata":{"name":"cluster-1"}}`), nil, nil)
	require.NoError(t, err)
	cluster, ok := obj.(*flomesh.Cluster)
	require.True(t, ok, "decoded to %T", obj)
	assert.Equal(t, "default/default/default/cluster-1", flomesh.KeyOf(cluster))
	assert.Equal(t, int32(v1alpha1.DefaultGatewayPort), cluster.Spec.GatewayPort)
}
