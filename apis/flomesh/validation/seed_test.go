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

package validation

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/install"
)

// The seed manifests are the objects users of the original walkthrough
// apply; fedmesh must accept each unchanged. artifacts/examples holds
// verbatim copies, so the test does not depend on where the repository is
// cloned.

// seedDecoder decodes the way the API server does: strictly, with
// defaulting, into the internal version.
func seedDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDecoder()
}

// readSeed returns the documents of a seed file with its ${...} variables
// substituted, as the user of the walkthrough would.
func readSeed(t *testing.T, name string, vars map[string]string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "artifacts", "examples", name))
	require.NoError(t, err)
	text := string(data)
	for k, v := range vars {
		text = strings.ReplaceAll(text, "${"+k+"}", v)
	}
	require.NotContains(t, text, "${", "a variable of %s is not substituted", name)

	var docs [][]byte
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func decodeSeed(t *testing.T, doc []byte) runtime.Object {
	t.Helper()
	obj, _, err := seedDecoder(t).Decode(doc, nil, nil)
	require.NoError(t, err)
	return obj
}

// indentKubeconfig fits a kubeconfig under the seed's `kubeconfig: |+`,
// whose placeholder line already carries the first line's indent.
func indentKubeconfig(kubeconfig string) string {
	return strings.ReplaceAll(strings.TrimSuffix(kubeconfig, "\n"), "\n", "\n    ")
}

func TestSeedCluster(t *testing.T) {
	kubeconfig := testKubeconfig(t, nil)
	docs := readSeed(t, "cluster.yaml", map[string]string{
		"CLUSTER_NAME":                        "cluster-1",
		"HOST_IP":                             "192.168.1.110",
		"PORT":                                "81",
		"KUBECONFIG_OF_THE_MEMBER_INDENTED_4": indentKubeconfig(kubeconfig),
	})
	require.Len(t, docs, 1)

	cluster, ok := decodeSeed(t, docs[0]).(*flomesh.Cluster)
	require.True(t, ok, "decoded to %T", cluster)
	assert.Equal(t, "cluster-1", cluster.Name)
	assert.Equal(t, "default/default/default/cluster-1", flomesh.KeyOf(cluster))
	assert.Equal(t, "192.168.1.110", cluster.Spec.GatewayHost)
	assert.Equal(t, int32(81), cluster.Spec.GatewayPort)
	assert.Equal(t, strings.TrimSpace(kubeconfig), strings.TrimSpace(cluster.Spec.Kubeconfig))

	assert.Empty(t, ValidateCluster(cluster, KubeconfigPolicy{}), "the seed's cluster.yaml applies unchanged")
}

func TestSeedGlobalTrafficPolicies(t *testing.T) {
	for file, lbType := range map[string]flomesh.LoadBalancerType{
		"gtp-failover.yaml":     flomesh.FailOverLbType,
		"gtp-activeactive.yaml": flomesh.ActiveActiveLbType,
	} {
		t.Run(file, func(t *testing.T) {
			docs := readSeed(t, file, nil)
			require.Len(t, docs, 1)
			policy, ok := decodeSeed(t, docs[0]).(*flomesh.GlobalTrafficPolicy)
			require.True(t, ok, "decoded to %T", policy)
			// Applied with `kubectl apply -n httpbin`.
			policy.Namespace = "httpbin"

			assert.Equal(t, lbType, policy.Spec.LbType)
			assert.Equal(t, []flomesh.TrafficTarget{
				{ClusterKey: "default/default/default/cluster-1"},
				{ClusterKey: "default/default/default/cluster-3"},
			}, policy.Spec.Targets)
			assert.Empty(t, ValidateGlobalTrafficPolicy(policy))
		})
	}
}

func TestSeedServiceExports(t *testing.T) {
	docs := readSeed(t, "serviceexport-httpbin.yaml", map[string]string{"CLUSTER_NAME": "cluster-3"})
	require.Len(t, docs, 2)
	for i, name := range []string{"httpbin", "httpbin-cluster-3"} {
		export, ok := decodeSeed(t, docs[i]).(*flomesh.ServiceExport)
		require.True(t, ok, "decoded to %T", export)
		assert.Equal(t, name, export.Name)
		assert.Equal(t, flomesh.RoundRobinLoadBalancer, export.Spec.LoadBalancer, "defaulted")
		require.Len(t, export.Spec.Rules, 1)
		assert.Equal(t, "/cluster-3/"+strings.Replace(name, "httpbin", "httpbin-mesh", 1), export.Spec.Rules[0].Path)
		assert.Empty(t, ValidateServiceExport(export))
	}
}

// TestSeedStrictDecoding guards the decoder the seed tests rely on: a
// misspelt field must fail, or the seeds would pass for the wrong reason.
func TestSeedStrictDecoding(t *testing.T) {
	_, _, err := seedDecoder(t).Decode([]byte("apiVersion: flomesh.io/v1alpha1\nkind: GlobalTrafficPolicy\n"+
		"metadata:\n  name: httpbin\nspec:\n  lbtype: FailOver\n"), nil, nil)
	require.Error(t, err)
	assert.True(t, runtime.IsStrictDecodingError(err), "error: %v", err)
}
