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
	"encoding/json"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/utils/ptr"
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
// namespaces and ServiceAccounts are created first, since a dry run creates
// nothing the next object could be put in or a pod run as.
//
// The namespace fedmesh enforces the restricted Pod Security profile, which
// the control plane's PodSecurity admission applies to pods, not to
// Deployments: the pod of each Deployment is created too, in a dry run, and
// must be admitted, while the same pod without its security contexts must
// be refused (the enforcement is live, not merely labelled).
func TestDeployManifestsApply(t *testing.T) {
	f := framework.Start(t, framework.Options{WithoutFedmesh: true})
	objs := deployObjects(t)
	first := &unstructured.UnstructuredList{Object: map[string]interface{}{"apiVersion": "v1", "kind": "List"}}
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "ServiceAccount" {
			first.Items = append(first.Items, *o)
		}
	}
	require.NotEmpty(t, first.Items)
	firstJSON, err := first.MarshalJSON()
	require.NoError(t, err)
	for _, k := range kubectls(t) {
		t.Run(k.name, func(t *testing.T) {
			kubeconfig := f.ControlPlane.KubeconfigPath
			k.run(t, kubeconfig, string(firstJSON), "apply", "-f", "-")
			out, errOut, err := k.try(t, kubeconfig, "", "apply", "--dry-run=server", "--validate=strict", "-o", "json", "-f", deployDir(t))
			require.NoError(t, err, errOut)
			assert.NotContains(t, errOut, "PodSecurity", "no workload would make a pod the namespace refuses")

			// The server answered each object with what it would store.
			applied := map[string]*unstructured.Unstructured{}
			dec := json.NewDecoder(strings.NewReader(out))
			for dec.More() {
				u := &unstructured.Unstructured{}
				require.NoError(t, dec.Decode(&u.Object))
				if u.IsList() {
					require.NoError(t, u.EachListItem(func(o runtime.Object) error {
						item := o.(*unstructured.Unstructured)
						applied[objectKey(item)] = item
						return nil
					}))
					continue
				}
				applied[objectKey(u)] = u
			}
			for _, o := range objs {
				got := applied[objectKey(o)]
				if !assert.NotNil(t, got, "the server answered %s", objectKey(o)) {
					continue
				}
				assert.NotEmpty(t, got.GetUID(), "%s: admitted as an object to store", objectKey(o))
			}
			assert.Len(t, applied, len(objs), "no more objects than the manifests hold")

			// The pod templates keep every security setting, as stored.
			for _, name := range []string{"fedmesh-apiserver", "fedmesh-syncer"} {
				got := applied[objectKey(deployUnstructured(t, "Deployment", name))]
				require.NotNil(t, got, name)
				var d appsv1.Deployment
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &d))
				t.Run("stored "+name, func(t *testing.T) { assertHardened(t, d.Spec.Template.Spec) })

				pod := podOf(t, &d)
				out := k.run(t, kubeconfig, podJSON(t, pod), "create", "--dry-run=server", "-o", "json", "-f", "-")
				var admitted corev1.Pod
				require.NoError(t, json.Unmarshal([]byte(out), &admitted))
				t.Run("admitted pod of "+name, func(t *testing.T) { assertHardened(t, admitted.Spec) })

				bare := pod.DeepCopy()
				bare.Spec.SecurityContext = nil
				for i := range bare.Spec.Containers {
					bare.Spec.Containers[i].SecurityContext = nil
				}
				_, errOut, err := k.try(t, kubeconfig, podJSON(t, bare), "create", "--dry-run=server", "-f", "-")
				require.Error(t, err, "a pod without security contexts is refused in %s", pod.Namespace)
				assert.Contains(t, errOut, `violates PodSecurity "restricted:latest"`)
			}

			np := applied[objectKey(deployUnstructured(t, "NetworkPolicy", "etcd"))]
			require.NotNil(t, np)
			var stored networkingv1.NetworkPolicy
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(np.Object, &stored))
			var shipped networkingv1.NetworkPolicy
			deployObject(t, "NetworkPolicy", "etcd", &shipped)
			assert.Equal(t, shipped.Spec, stored.Spec, "the NetworkPolicy is stored as shipped")
		})
	}
}

// objectKey names an object by kind, namespace and name.
func objectKey(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// deployUnstructured returns the object of artifacts/deploy of that kind
// and name.
func deployUnstructured(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range deployObjects(t) {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in artifacts/deploy", kind, name)
	return nil
}

// podOf is the pod a Deployment's ReplicaSet would create.
func podOf(t *testing.T, d *appsv1.Deployment) *corev1.Pod {
	t.Helper()
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-dry-run", Namespace: d.Namespace,
			Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
	}
}

func podJSON(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	b, err := json.Marshal(pod)
	require.NoError(t, err)
	return string(b)
}

// assertHardened checks a pod spec against what every pod of
// artifacts/deploy must be: not root, by number; the runtime's seccomp
// profile; every container without privilege escalation, on a read-only
// root file system, with no capability, and with requests and limits of
// CPU and memory; a writable /tmp of its own.
func assertHardened(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if !assert.NotNil(t, psc, "pod securityContext") {
		return
	}
	assert.Equal(t, ptr.To(true), psc.RunAsNonRoot, "runAsNonRoot")
	if assert.NotNil(t, psc.RunAsUser, "runAsUser") {
		assert.NotZero(t, *psc.RunAsUser, "runAsUser is not root")
	}
	if assert.NotNil(t, psc.RunAsGroup, "runAsGroup") {
		assert.NotZero(t, *psc.RunAsGroup, "runAsGroup is not root")
	}
	if assert.NotNil(t, psc.SeccompProfile, "seccompProfile") {
		assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
	}
	emptyDirs := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.EmptyDir != nil {
			emptyDirs[v.Name] = true
		}
		if v.Secret != nil && v.Secret.DefaultMode != nil {
			assert.Zero(t, *v.Secret.DefaultMode&0o007, "Secret %s is not world-readable", v.Secret.SecretName)
			assert.NotNil(t, psc.FSGroup, "fsGroup makes Secret %s readable by the pod's group", v.Secret.SecretName)
		}
	}
	require.NotEmpty(t, spec.Containers)
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if !assert.NotNil(t, sc, "%s: securityContext", c.Name) {
			continue
		}
		assert.Equal(t, ptr.To(false), sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", c.Name)
		assert.Equal(t, ptr.To(true), sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", c.Name)
		assert.NotEqual(t, ptr.To(false), sc.RunAsNonRoot, "%s: runAsNonRoot not undone", c.Name)
		assert.Nil(t, sc.Privileged, "%s: privileged", c.Name)
		if assert.NotNil(t, sc.Capabilities, "%s: capabilities", c.Name) {
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s: drop ALL", c.Name)
			assert.Empty(t, sc.Capabilities.Add, "%s: no capability added", c.Name)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			limit, hasLimit := c.Resources.Limits[r]
			assert.True(t, hasReq, "%s: a %s request", c.Name, r)
			if assert.True(t, hasLimit, "%s: a %s limit", c.Name, r) && hasReq {
				assert.LessOrEqual(t, req.Cmp(limit), 0, "%s: %s request %s within the limit %s", c.Name, r, req.String(), limit.String())
			}
		}
		tmp := false
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == "/tmp" && emptyDirs[m.Name] && !m.ReadOnly {
				tmp = true
			}
		}
		assert.True(t, tmp, "%s: a writable emptyDir at /tmp", c.Name)
	}
}

// TestDeployPodsHardened reads every pod template of artifacts/deploy
// (no servers; TestDeployManifestsApply checks what the API server keeps
// of them and admits).
func TestDeployPodsHardened(t *testing.T) {
	templates := 0
	for _, o := range deployObjects(t) {
		tpl, found, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		require.NoError(t, err)
		if !found {
			continue
		}
		templates++
		var spec corev1.PodSpec
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(tpl, &spec))
		t.Run(objectKey(o), func(t *testing.T) { assertHardened(t, spec) })
	}
	assert.Equal(t, 2, templates, "fedmesh-apiserver and fedmesh-syncer")

	// Their namespace enforces the restricted profile on every pod.
	var ns corev1.Namespace
	deployObject(t, "Namespace", "fedmesh", &ns)
	for _, mode := range []string{"enforce", "warn", "audit"} {
		assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/"+mode], mode)
	}
}

// TestDeployEtcdNetworkPolicy checks that the NetworkPolicy etcd guards
// the etcd fedmesh-apiserver is configured with: it is in the namespace
// of --etcd-servers, lets fedmesh-apiserver's pods (as the Deployment
// labels them) reach its client port, the etcd members one another's peer
// port, and nobody anything else.
func TestDeployEtcdNetworkPolicy(t *testing.T) {
	var np networkingv1.NetworkPolicy
	deployObject(t, "NetworkPolicy", "etcd", &np)
	var apiserver appsv1.Deployment
	deployObject(t, "Deployment", "fedmesh-apiserver", &apiserver)

	// https://etcd.fedmesh.svc:2379: the Service etcd of the namespace
	// fedmesh, on port 2379.
	u, err := url.Parse(flagValues(apiserver.Spec.Template.Spec.Containers[0].Args)["etcd-servers"])
	require.NoError(t, err)
	host := strings.Split(u.Hostname(), ".")
	require.GreaterOrEqual(t, len(host), 2, "a Service name: %s", u.Hostname())
	assert.Equal(t, host[1], np.Namespace, "the policy is in etcd's namespace")
	clientPort, err := strconv.Atoi(u.Port())
	require.NoError(t, err)

	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes)
	etcdPods, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	require.NoError(t, err)
	assert.False(t, etcdPods.Empty(), "the policy selects etcd's pods, not every pod")
	assert.False(t, etcdPods.Matches(labels.Set(apiserver.Spec.Template.Labels)), "fedmesh-apiserver's pods are not etcd's")

	require.Len(t, np.Spec.Ingress, 2)
	client, peer := np.Spec.Ingress[0], np.Spec.Ingress[1]
	for name, rule := range map[string]networkingv1.NetworkPolicyIngressRule{"client": client, "peer": peer} {
		require.Len(t, rule.From, 1, name)
		assert.Nil(t, rule.From[0].NamespaceSelector, "%s: from this namespace only", name)
		assert.Nil(t, rule.From[0].IPBlock, "%s: from no address range", name)
		require.Len(t, rule.Ports, 1, name)
		assert.Equal(t, ptr.To(corev1.ProtocolTCP), rule.Ports[0].Protocol, name)
	}
	from, err := metav1.LabelSelectorAsSelector(client.From[0].PodSelector)
	require.NoError(t, err)
	assert.True(t, from.Matches(labels.Set(apiserver.Spec.Template.Labels)), "fedmesh-apiserver's pods reach the client port")
	var syncer appsv1.Deployment
	deployObject(t, "Deployment", "fedmesh-syncer", &syncer)
	assert.False(t, from.Matches(labels.Set(syncer.Spec.Template.Labels)), "fedmesh-syncer's do not")
	assert.Equal(t, clientPort, client.Ports[0].Port.IntValue(), "the port of --etcd-servers")
	peers, err := metav1.LabelSelectorAsSelector(peer.From[0].PodSelector)
	require.NoError(t, err)
	assert.Equal(t, etcdPods.String(), peers.String(), "the peer port is etcd's alone")
	assert.Equal(t, 2380, peer.Ports[0].Port.IntValue())
}
