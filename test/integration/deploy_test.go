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
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/test/framework"
)

// deployDir is artifacts/deploy.
func deployDir(t *testing.T) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, "artifacts", "deploy")
}

// deployObjects reads every object of artifacts/deploy, in file order.
func deployObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir(t), "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var objs []*unstructured.Unstructured
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			u := &unstructured.Unstructured{}
			err := dec.Decode(&u.Object)
			if err == io.EOF {
				break
			}
			require.NoError(t, err, file)
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs
}

// deployObject returns the object of artifacts/deploy of that kind and
// name, converted to into.
func deployObject(t *testing.T, kind, name string, into interface{}) {
	t.Helper()
	for _, o := range deployObjects(t) {
		if o.GetKind() == kind && o.GetName() == name {
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into))
			return
		}
	}
	t.Fatalf("no %s %s in artifacts/deploy", kind, name)
}

// flagValues maps each --flag=value of args to its value.
func flagValues(args []string) map[string]string {
	flags := map[string]string{}
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[name] = value
	}
	return flags
}

// mountedSecret returns the Secret whose volume is mounted at the
// directory of file in the container, or "".
func mountedSecret(spec corev1.PodSpec, c corev1.Container, file string) string {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Dir(file) {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// TestDeployManifestsSafeByDefault reads the Deployments of artifacts/deploy:
// fedmesh-apiserver encrypts Clusters at rest with the shipped
// EncryptionConfiguration, whose key is a placeholder it refuses to start
// with; it reaches etcd over TLS with a client certificate and serves no
// profiling; fedmesh-syncer is probed over HTTPS.
func TestDeployManifestsSafeByDefault(t *testing.T) {
	var apiserver appsv1.Deployment
	deployObject(t, "Deployment", "fedmesh-apiserver", &apiserver)
	spec := apiserver.Spec.Template.Spec
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	flags := flagValues(c.Args)

	assert.Equal(t, "false", flags["profiling"], "--profiling=false")
	assert.True(t, strings.HasPrefix(flags["etcd-servers"], "https://"), "etcd over TLS: %q", flags["etcd-servers"])
	for _, f := range []string{"etcd-cafile", "etcd-certfile", "etcd-keyfile"} {
		if assert.NotEmpty(t, flags[f], "--%s", f) {
			assert.Equal(t, "fedmesh-etcd-client", mountedSecret(spec, c, flags[f]), "--%s is in the Secret fedmesh-etcd-client", f)
		}
	}
	for _, f := range []string{"tls-cert-file", "tls-private-key-file"} {
		assert.Equal(t, "fedmesh-apiserver-tls", mountedSecret(spec, c, flags[f]), "--%s is in the Secret fedmesh-apiserver-tls", f)
	}
	config := flags["encryption-provider-config"]
	require.NotEmpty(t, config, "--encryption-provider-config")
	assert.Equal(t, "fedmesh-apiserver-encryption", mountedSecret(spec, c, config), "the EncryptionConfiguration is the Secret's")

	// The shipped Secret holds, under the file's name, the configuration.
	var secret corev1.Secret
	deployObject(t, "Secret", "fedmesh-apiserver-encryption", &secret)
	assert.Equal(t, "fedmesh", secret.Namespace)
	data, ok := secret.StringData[path.Base(config)]
	require.True(t, ok, "the Secret has the key %s", path.Base(config))

	var parsed struct {
		Kind      string `json:"kind"`
		Resources []struct {
			Resources []string                                `json:"resources"`
			Providers []map[string]map[string][]encryptionKey `json:"providers"`
		} `json:"resources"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(data), &parsed))
	assert.Equal(t, "EncryptionConfiguration", parsed.Kind)
	require.Len(t, parsed.Resources, 1)
	assert.Equal(t, []string{"clusters.flomesh.io"}, parsed.Resources[0].Resources)
	providers := parsed.Resources[0].Providers
	require.GreaterOrEqual(t, len(providers), 2)
	first := ""
	for name := range providers[0] {
		first = name
	}
	assert.Contains(t, []string{"secretbox", "aescbc", "aesgcm"}, first, "a key-based provider encrypts what is written")
	_, last := providers[len(providers)-1]["identity"]
	assert.True(t, last, "identity comes last, to read what was stored in clear")
	placeholder := providers[0][first]["keys"][0].Secret
	assert.Contains(t, placeholder, "REPLACE", "the key is an obvious placeholder")
	assert.Contains(t, data, "PLACEHOLDER")

	// fedmesh-apiserver loads the configuration as shipped: with the
	// placeholder it fails, so it never runs with a published key; with a
	// real key it encrypts clusters.flomesh.io.
	load := func(content string) (*encryptionconfig.EncryptionConfiguration, error) {
		file := filepath.Join(t.TempDir(), "encryption.yaml")
		require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return encryptionconfig.LoadEncryptionConfig(ctx, file, false, "test")
	}
	_, err := load(data)
	assert.Error(t, err, "the placeholder is no key fedmesh-apiserver accepts")
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	loaded, err := load(strings.Replace(data, placeholder, key, 1))
	require.NoError(t, err, "with a real key in place of the placeholder")
	assert.Contains(t, loaded.Transformers, schema.GroupResource{Group: "flomesh.io", Resource: "clusters"})

	// fedmesh-syncer's probes, like its /metrics, are HTTPS.
	var syncer appsv1.Deployment
	deployObject(t, "Deployment", "fedmesh-syncer", &syncer)
	sc := syncer.Spec.Template.Spec.Containers[0]
	for name, p := range map[string]*corev1.Probe{"liveness": sc.LivenessProbe, "readiness": sc.ReadinessProbe} {
		if assert.NotNil(t, p, name) && assert.NotNil(t, p.HTTPGet, name) {
			assert.Equal(t, corev1.URISchemeHTTPS, p.HTTPGet.Scheme, "%s probe scheme", name)
		}
	}
	assert.NotContains(t, flagValues(sc.Args), "profiling", "the syncer serves no profiling")
}

// encryptionKey is a key of an EncryptionConfiguration provider.
type encryptionKey struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// TestDeployManifestsApply applies every manifest of artifacts/deploy to a
// real control plane with kubectl, as an operator would, in a server-side
// dry run: the API server validates every object strictly (unknown or
// duplicate fields fail) and runs its admission. Only the manifests'
// namespaces are created first, since a dry run creates nothing the next
// object could be put in.
func TestDeployManifestsApply(t *testing.T) {
	f := framework.Start(t, framework.Options{WithoutFedmesh: true})
	objs := deployObjects(t)
	namespaces := &unstructured.UnstructuredList{Object: map[string]interface{}{"apiVersion": "v1", "kind": "List"}}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			namespaces.Items = append(namespaces.Items, *o)
		}
	}
	require.NotEmpty(t, namespaces.Items)
	nsJSON, err := namespaces.MarshalJSON()
	require.NoError(t, err)
	for _, k := range kubectls(t) {
		t.Run(k.name, func(t *testing.T) {
			kubeconfig := f.ControlPlane.KubeconfigPath
			k.run(t, kubeconfig, string(nsJSON), "apply", "-f", "-")
			out := k.run(t, kubeconfig, "", "apply", "--dry-run=server", "--validate=strict", "-f", deployDir(t))
			lines := strings.Split(strings.TrimSpace(out), "\n")
			dry := 0
			for _, l := range lines {
				if strings.HasSuffix(l, "(server dry run)") {
					dry++
				}
			}
			assert.Equal(t, len(objs), dry, "every object applied in the dry run:\n%s", out)
		})
	}
}
