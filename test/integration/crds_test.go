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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	flomeshv1alpha1 "github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
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

	t.Run("ServiceExport limits", func(t *testing.T) {
		testServiceExportLimits(t, ctx, m)
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

// testServiceExportLimits checks that the member's API server enforces the
// limits of a ServiceExport with the CRD's schema, and that
// validation.ValidateServiceExportSpec, which fedmesh-apiserver applies to
// every export it reads, refuses exactly the same exports. The largest
// valid export also has the CRD's pairwise rule over the rules' paths at
// its most costly, which must stay within the API server's CEL budget.
func testServiceExportLimits(t *testing.T, ctx context.Context, m *framework.Cluster) {
	longPath := "/" + strings.Repeat("p", validation.MaxPathLength-1)
	rules := func(n int, path func(i int) string, port func(i int) int32) []flomeshv1alpha1.ServiceExportRule {
		rules := make([]flomeshv1alpha1.ServiceExportRule, n)
		for i := range rules {
			rules[i] = flomeshv1alpha1.ServiceExportRule{PortNumber: port(i), Path: path(i)}
		}
		return rules
	}
	samePath := func(int) string { return longPath }
	eachPath := func(i int) string { return fmt.Sprintf("/p%d", i) }
	samePort := func(int) int32 { return 8080 }
	eachPort := func(i int) int32 { return int32(8000 + i) }
	label := strings.Repeat("a", 63)
	targets := make([]string, validation.MaxTargetClusters)
	for i := range targets {
		targets[i] = fmt.Sprintf("%s/%s/%s/%s%03d", label, label, label, label[:60], i)
	}
	require.Len(t, targets[0], validation.MaxClusterKeyLength)

	tests := []struct {
		name string
		spec flomeshv1alpha1.ServiceExportSpec
		// wantErr are parts of the member's error; none when it accepts.
		wantErr []string
	}{
		{name: "largest valid", spec: flomeshv1alpha1.ServiceExportSpec{
			ServiceAccountName: strings.Repeat("s", validation.MaxServiceAccountNameLength),
			// Every pair of rules names the same port, so the CRD compares
			// every pair of longest paths.
			Rules:          rules(validation.MaxExportRules, samePath, samePort),
			PathRewrite:    &flomeshv1alpha1.PathRewrite{From: longPath, To: longPath},
			TargetClusters: targets,
		}},
		{name: "too many rules", spec: flomeshv1alpha1.ServiceExportSpec{Rules: rules(validation.MaxExportRules+1, eachPath, eachPort)},
			wantErr: []string{"spec.rules: Too many: 65: must have at most 64 items"}},
		{name: "no path", spec: flomeshv1alpha1.ServiceExportSpec{Rules: rules(1, func(int) string { return "" }, eachPort)},
			wantErr: []string{"spec.rules[0].path: Required value"}},
		{name: "relative path", spec: flomeshv1alpha1.ServiceExportSpec{Rules: rules(1, func(int) string { return "p" }, eachPort)},
			wantErr: []string{"spec.rules[0].path", `must be an absolute path (start with "/")`}},
		{name: "path too long", spec: flomeshv1alpha1.ServiceExportSpec{Rules: rules(1, func(int) string { return longPath + "p" }, eachPort)},
			wantErr: []string{"spec.rules[0].path: Too long: may not be more than 1024"}},
		{name: "one port at two paths", spec: flomeshv1alpha1.ServiceExportSpec{Rules: rules(2, eachPath, samePort)},
			wantErr: []string{"spec.rules", "a port is exposed at one path only"}},
		{name: "too many target clusters", spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: rules(1, eachPath, eachPort), TargetClusters: append(targets, "default/default/default/one-more")},
			wantErr: []string{"spec.targetClusters: Too many: 101: must have at most 100 items"}},
		{name: "target cluster key too long", spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: rules(1, eachPath, eachPort), TargetClusters: []string{targets[0] + "a"}},
			wantErr: []string{"spec.targetClusters[0]: Too long: may not be more than 255"}},
		{name: "serviceAccountName too long", spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: rules(1, eachPath, eachPort), ServiceAccountName: strings.Repeat("s", validation.MaxServiceAccountNameLength+1)},
			wantErr: []string{"spec.serviceAccountName: Too long: may not be more than 253"}},
		{name: "rewrite without from", spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: rules(1, eachPath, eachPort), PathRewrite: &flomeshv1alpha1.PathRewrite{To: "/"}},
			wantErr: []string{"spec.pathRewrite.from: Required value"}},
		{name: "rewrite too long", spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: rules(1, eachPath, eachPort), PathRewrite: &flomeshv1alpha1.PathRewrite{From: longPath, To: longPath + "p"}},
			wantErr: []string{"spec.pathRewrite.to: Too long: may not be more than 1024"}},
	}
	client := m.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin")
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Create(ctx, &flomeshv1alpha1.ServiceExport{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("limits-%d", i)},
				Spec:       tc.spec,
			}, metav1.CreateOptions{})
			var spec flomesh.ServiceExportSpec
			require.NoError(t, flomeshv1alpha1.Convert_v1alpha1_ServiceExportSpec_To_flomesh_ServiceExportSpec(&tc.spec, &spec, nil))
			errs := validation.ValidateServiceExportSpec(&spec, field.NewPath("spec"))
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
				assert.Empty(t, errs, "fedmesh accepts what the member accepts")
				return
			}
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "%v", err)
			for _, want := range tc.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotEmpty(t, errs, "fedmesh refuses what the member refuses")
		})
	}
}

// testdata returns a file of testdata/.
func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}
