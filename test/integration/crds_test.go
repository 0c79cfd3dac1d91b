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
package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flomeshv1alpha1 "github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/test/framework"
)

// TestMemberCRDs checks the CRDs the framework installs into members from
// artifacts/crds: the walkthrough's ServiceExports and policies apply
// unchanged with kubectl, exports come back with the spec the walkthrough
// shows, and a ServiceImport of the seed's shape round-trips through the
// generated clientset.
func TestMemberCRDs(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}, WithoutFedmesh: true})
	m := f.Member("cluster-1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	_, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	// The walkthrough reads this spec on cluster-3: the CRD fills in the
	// default load balancer.
	wantExportSpec := strings.ReplaceAll(string(testdata(t, "serviceexport-spec.json")), "cluster-3", "cluster-1")
	for _, k := range kubectls(t) {
		t.Run("ServiceExport/"+k.name, func(t *testing.T) {
			out := k.run(t, m.KubeconfigPath, seed(t, "serviceexport-httpbin.yaml", map[string]string{"CLUSTER_NAME": "cluster-1"}), "apply", "-f", "-")
			assert.Contains(t, out, "serviceexport.flomesh.io/httpbin ")
			assert.Contains(t, out, "serviceexport.flomesh.io/httpbin-cluster-1 ")

			out = k.run(t, m.KubeconfigPath, "", "get", "sexp", "-n", "httpbin")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 3, out)
			assert.Equal(t, []string{"NAME", "VALID", "AGE"}, strings.Fields(lines[0]))
			assert.Equal(t, "httpbin", strings.Fields(lines[1])[0])
			assert.Equal(t, "httpbin-cluster-1", strings.Fields(lines[2])[0])

			spec := k.run(t, m.KubeconfigPath, "", "get", "serviceexports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}")
			assert.JSONEq(t, wantExportSpec, spec)
		})
	}

	t.Run("GlobalTrafficPolicy", func(t *testing.T) {
		k := kubectls(t)[0]
		out := k.run(t, m.KubeconfigPath, seed(t, "gtp-failover.yaml", nil), "apply", "-n", "httpbin", "-f", "-")
		assert.Contains(t, out, "globaltrafficpolicy.flomesh.io/httpbin ")
		out = k.run(t, m.KubeconfigPath, "", "get", "gtp", "-n", "httpbin")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 2, out)
		assert.Equal(t, []string{"NAME", "LB", "TYPE", "AGE"}, strings.Fields(lines[0]))
		assert.Equal(t, []string{"httpbin", "FailOver"}, strings.Fields(lines[1])[:2])
	})

	t.Run("ServiceImport", func(t *testing.T) {
		raw := testdata(t, "serviceimport-httpbin.json")
		var spec flomeshv1alpha1.ServiceImportSpec
		require.NoError(t, json.Unmarshal(raw, &spec))
		client := versioned.NewForConfigOrDie(m.Config()).FlomeshV1alpha1().ServiceImports("httpbin")
		_, err := client.Create(ctx, &flomeshv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: "httpbin"},
			Spec:       spec,
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		got, err := client.Get(ctx, "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, spec, got.Spec)

		// kubectl sees the same shape, and the TYPE column.
		k := kubectls(t)[0]
		assert.JSONEq(t, string(raw), k.run(t, m.KubeconfigPath, "", "get", "simp", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}"))
		out := k.run(t, m.KubeconfigPath, "", "get", "serviceimports", "-n", "httpbin")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 2, out)
		assert.Equal(t, []string{"NAME", "TYPE", "AGE"}, strings.Fields(lines[0]))
		assert.Equal(t, []string{"httpbin", "ClusterSetIP"}, strings.Fields(lines[1])[:2])
	})
}

// testdata returns a file of testdata/.
func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}
