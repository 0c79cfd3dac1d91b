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
package loopback

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

const (
	fedmeshNamespace      = "fedmesh"
	fedmeshServiceAccount = "fedmesh-apiserver"
	fedmeshService        = "fedmesh-apiserver"
	// APIServiceName is the APIService of artifacts/deploy that registers
	// fedmesh-apiserver.
	APIServiceName = "v1alpha1.flomesh.io"
	// FieldManager is the field manager of what the federation applies.
	FieldManager = "fedmesh-loopback"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// startFedmesh registers fedmesh-apiserver on the control plane with the
// manifests of artifacts/deploy, runs it as its ServiceAccount, and waits
// until the aggregator reports the APIService Available.
//
// It runs with the identity the Deployment's pods would have: a token from
// the TokenRequest API, valid for 24 hours, in a kubeconfig that it uses
// for its own client, for delegated authentication (TokenReview, the
// requestheader configuration) and for delegated authorization
// (SubjectAccessReview). So the RBAC rules shipped in artifacts/deploy are
// exercised with the server's real identity.
func (f *Federation) startFedmesh(ctx context.Context, extraArgs []string) error {
	bin, err := f.fedmeshBinary("fedmesh-apiserver")
	if err != nil {
		return err
	}
	ports, apiPort, err := f.fedmeshPorts()
	if err != nil {
		return err
	}
	if err := f.applyDeployManifests(ctx, apiPort); err != nil {
		return fmt.Errorf("applying artifacts/deploy: %w", err)
	}
	f.say("applied artifacts/deploy to control-plane (Service %s/%s -> ExternalName 127.0.0.1, APIService %s -> port %d)",
		fedmeshNamespace, fedmeshService, APIServiceName, apiPort)
	kubeconfig, err := f.serviceAccountKubeconfig(ctx, fedmeshServiceAccount)
	if err != nil {
		return err
	}
	for i, port := range ports {
		name := "fedmesh-apiserver"
		if i > 0 {
			name = fmt.Sprintf("fedmesh-apiserver-%d", i)
		}
		s := &FedmeshServer{Name: name, f: f, port: port}
		s.proc = f.newProcess(name, bin, true, append([]string{
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
			"--etcd-servers=" + f.etcdURL, "--etcd-prefix=/fedmesh",
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--tls-cert-file=" + f.certs.servingCert, "--tls-private-key-file=" + f.certs.servingKey,
		}, extraArgs...)...)
		if err := s.proc.start(); err != nil {
			return err
		}
		f.fedmeshServers = append(f.fedmeshServers, s)
		f.say("started %s on https://%s as system:serviceaccount:%s:%s", name, hostPort(port), fedmeshNamespace, fedmeshServiceAccount)
	}
	f.fedmesh, f.fedmeshPort = f.fedmeshServers[0].proc, f.fedmeshServers[0].port
	for _, s := range f.fedmeshServers[1:] {
		// Each replica is ready by itself, before the APIService, which
		// one ready replica behind the balancer makes Available.
		if err := s.waitReady(ctx); err != nil {
			return err
		}
	}
	if err := f.waitFor(ctx, f.fedmesh, "APIService "+APIServiceName, f.apiServiceAvailable); err != nil {
		return err
	}
	f.say("APIService %s is Available", APIServiceName)
	return nil
}

// fedmeshBinary is the path of one of fedmesh's own commands, in
// Options.FedmeshBinDir.
func (f *Federation) fedmeshBinary(name string) (string, error) {
	if f.opts.FedmeshBinDir == "" {
		return "", fmt.Errorf("no Options.FedmeshBinDir to run %s from", name)
	}
	p := filepath.Join(f.opts.FedmeshBinDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// FedmeshLog is the path of fedmesh-apiserver's log.
func (f *Federation) FedmeshLog() string { return f.fedmesh.logPath }

// applyDeployManifests applies every file of artifacts/deploy, changed
// only where loopback demands:
//
//   - The Service selects the Deployment's pods, which never run here. It
//     becomes an ExternalName Service for 127.0.0.1: the aggregator
//     resolves one to https://<externalName>:<APIService port>, and
//     Endpoints and EndpointSlices reject loopback addresses, so a Service
//     with manual endpoints is no option.
//   - The APIService ships with an empty caBundle and the in-cluster port.
//     It gets the federation's CA, which signed the serving certificate
//     (valid for fedmesh-apiserver.fedmesh.svc), and the port
//     fedmesh-apiserver listens on.
//
// The Deployments are applied too, as shipped: with a
// kube-controller-manager they get ReplicaSets and Pods, which stay
// Pending, as there is no kubelet or scheduler.
func (f *Federation) applyDeployManifests(ctx context.Context, port int) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(root, "artifacts", "deploy", "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	objs := []*unstructured.Unstructured{}
	for _, file := range files {
		docs, err := readObjects(file)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		objs = append(objs, docs...)
	}
	for _, o := range objs {
		switch {
		case o.GetKind() == "Service" && o.GetName() == fedmeshService:
			o.Object["spec"] = map[string]interface{}{"type": "ExternalName", "externalName": "127.0.0.1"}
		case o.GetKind() == "APIService" && o.GetName() == APIServiceName:
			if err := unstructured.SetNestedField(o.Object, base64.StdEncoding.EncodeToString(f.certs.ca.CertPEM), "spec", "caBundle"); err != nil {
				return err
			}
			if err := unstructured.SetNestedField(o.Object, int64(port), "spec", "service", "port"); err != nil {
				return err
			}
		}
	}
	return f.ControlPlane.Apply(ctx, objs...)
}

// Apply server-side applies objects to the cluster.
func (c *Cluster) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	cfg := c.Config()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		data, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

func readObjects(file string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// serviceAccountKubeconfig writes <dir>/<serviceAccount>.kubeconfig, a
// kubeconfig of the control plane holding a token, valid for 24 hours, of
// a ServiceAccount of the fedmesh namespace (fedmesh-apiserver's or
// fedmesh-syncer's), so the process runs with the identity and
// permissions the deploy manifests give it, not as an admin.
func (f *Federation) serviceAccountKubeconfig(ctx context.Context, serviceAccount string) (string, error) {
	tr, err := f.ControlPlane.Kube().CoreV1().ServiceAccounts(fedmeshNamespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", fedmeshNamespace, serviceAccount, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["control-plane"] = &clientcmdapi.Cluster{Server: f.ControlPlane.Server(), CertificateAuthorityData: f.certs.ca.CertPEM}
	cfg.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[serviceAccount] = &clientcmdapi.Context{Cluster: "control-plane", AuthInfo: serviceAccount}
	cfg.CurrentContext = serviceAccount
	path := filepath.Join(f.dir, serviceAccount+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// apiServiceAvailable succeeds when the aggregator reports fedmesh's
// APIService Available.
func (f *Federation) apiServiceAvailable(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(f.ControlPlane.Config())
	if err != nil {
		return err
	}
	u, err := dyn.Resource(apiServiceGVR).Get(ctx, APIServiceName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]interface{})
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return nil
			}
			return fmt.Errorf("APIService %s not Available: %v: %v", APIServiceName, m["reason"], m["message"])
		}
	}
	return fmt.Errorf("APIService %s has no Available condition yet", APIServiceName)
}

func withCodecs(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme.Scheme).WithoutConversion()
	return c
}

func httpGet(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
