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
package apiserver

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

func TestDiscovery(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(adminConfig)
	require.NoError(t, err)
	list, err := dc.ServerResourcesForGroupVersion("flomesh.io/v1alpha1")
	require.NoError(t, err)

	resources := map[string]metav1.APIResource{}
	for _, r := range list.APIResources {
		resources[r.Name] = r
	}
	for _, want := range []struct {
		name       string
		namespaced bool
		kind       string
		shortNames []string
	}{
		{"clusters", false, "Cluster", nil},
		{"clusters/status", false, "Cluster", nil},
		{"globaltrafficpolicies", true, "GlobalTrafficPolicy", []string{"gtp"}},
		{"globaltrafficpolicies/status", true, "GlobalTrafficPolicy", nil},
	} {
		r, ok := resources[want.name]
		if !assert.True(t, ok, "discovery lists %s", want.name) {
			continue
		}
		assert.Equal(t, want.namespaced, r.Namespaced, want.name)
		assert.Equal(t, want.kind, r.Kind, want.name)
		assert.Equal(t, want.shortNames, r.ShortNames, want.name)
	}
	assert.ElementsMatch(t, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
		[]string(resources["clusters"].Verbs))
}

func TestOpenAPI(t *testing.T) {
	client, err := rest.UnversionedRESTClientFor(withNegotiation(adminConfig))
	require.NoError(t, err)
	ctx := ctxFor(t)

	body, err := client.Get().AbsPath("/openapi/v3/apis/flomesh.io/v1alpha1").Do(ctx).Raw()
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	spec, ok := doc.Components.Schemas["io.flomesh.v1alpha1.GlobalTrafficPolicySpec"]
	require.True(t, ok, "v3 document describes GlobalTrafficPolicySpec")
	assert.Contains(t, spec.Properties, "lbType")
	assert.Contains(t, spec.Properties, "targets")

	v2, err := client.Get().AbsPath("/openapi/v2").Do(ctx).Raw()
	require.NoError(t, err)
	assert.Contains(t, string(v2), "io.flomesh.v1alpha1.Cluster")
}

func TestTables(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, "table-1")
	c.Spec.Region = "eu"
	_, err := newClient(t).FlomeshV1alpha1().Clusters().Create(ctx, c, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = newClient(t).FlomeshV1alpha1().GlobalTrafficPolicies("tables").Create(ctx, failOverPolicy("httpbin"), metav1.CreateOptions{})
	require.NoError(t, err)

	client, err := rest.UnversionedRESTClientFor(withNegotiation(adminConfig))
	require.NoError(t, err)
	get := func(path string) metav1.Table {
		raw, err := client.Get().AbsPath(path).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Raw()
		require.NoError(t, err)
		var tbl metav1.Table
		require.NoError(t, json.Unmarshal(raw, &tbl))
		return tbl
	}
	columns := func(tbl metav1.Table) []string {
		var names []string
		for _, c := range tbl.ColumnDefinitions {
			names = append(names, c.Name)
		}
		return names
	}

	clusters := get("/apis/flomesh.io/v1alpha1/clusters/table-1")
	assert.Equal(t, []string{"Name", "Key", "Gateway", "Ready", "Version", "Exports", "Age"}, columns(clusters))
	require.Len(t, clusters.Rows, 1)
	cells := clusters.Rows[0].Cells
	assert.Equal(t, []interface{}{"table-1", "eu/default/default/table-1", "192.168.1.110:81", "Unknown", "<unknown>", float64(0)}, cells[:6])
	for _, cell := range cells {
		if s, ok := cell.(string); ok {
			assert.NotContains(t, s, "current-context", "no cell holds the kubeconfig")
		}
	}
	// The row carries the object's metadata only, so the kubeconfig never
	// travels with a table.
	assert.NotContains(t, string(clusters.Rows[0].Object.Raw), "current-context")

	policies := get("/apis/flomesh.io/v1alpha1/namespaces/tables/globaltrafficpolicies")
	assert.Equal(t, []string{"Name", "LB Type", "Targets", "Resolved", "Routed", "Age"}, columns(policies))
	require.Len(t, policies.Rows, 1)
	assert.Equal(t, []interface{}{"httpbin", "FailOver", "default/default/default/cluster-1,default/default/default/cluster-3"},
		policies.Rows[0].Cells[:3])
}
