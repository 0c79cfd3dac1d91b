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
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
)

func withNegotiation(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	return c
}

func newClient(t *testing.T) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(adminConfig)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newClientB(b *testing.B) versioned.Interface {
	b.Helper()
	c, err := versioned.NewForConfig(adminConfig)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// memberKubeconfig returns a kubeconfig that passes validation; what it
// points at is not contacted by the storage layer.
func memberKubeconfig(t *testing.T, name string) string {
	t.Helper()
	kp, err := testCA.Client("fedmesh", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: testCA.CertPEM}
	cfg.AuthInfos["fedmesh"] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "fedmesh"}
	cfg.CurrentContext = name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
