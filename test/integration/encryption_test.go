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
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

// TestKubeconfigsEncryptedAtRest runs fedmesh-apiserver with the standard
// --encryption-provider-config and reads what it stored in etcd: the
// Cluster, kubeconfig and all, is ciphertext there and plain through the API.
func TestKubeconfigsEncryptedAtRest(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	config := filepath.Join(t.TempDir(), "encryption.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["clusters.flomesh.io"]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: `+key+`
      - identity: {}
`), 0o600))
	f := framework.Start(t, framework.Options{
		Members:     []string{"cluster-1"},
		FedmeshArgs: []string{"--encryption-provider-config=" + config},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	kc, err := f.Member("cluster-1").Kubeconfig()
	require.NoError(t, err)
	_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-keeper"},
		Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: string(kc)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{f.EtcdURL()}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer etcd.Close()
	resp, err := etcd.Get(ctx, "/fedmesh/", clientv3.WithPrefix())
	require.NoError(t, err)
	var stored []byte
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/clusters/secret-keeper") {
			stored = kv.Value
		}
	}
	require.NotNil(t, stored, "the Cluster is in etcd under /fedmesh")
	assert.True(t, strings.HasPrefix(string(stored), "k8s:enc:aescbc:v1:key1:"), "stored encrypted, got %.40q", stored)
	assert.NotContains(t, string(stored), "current-context", "no kubeconfig in clear in etcd")

	got, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "secret-keeper", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, string(kc), got.Spec.Kubeconfig, "the API serves it decrypted")
}
