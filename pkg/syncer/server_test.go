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

package syncer

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeWithoutControlPlane serves with a self-signed certificate and
// no control plane to delegate to (out of a cluster, no kubeconfig, lookups
// made optional): the probes stay open and /metrics stays closed, since
// nobody can be authorized.
func TestServeWithoutControlPlane(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	o := NewServerOptions()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o.SecureServing.Listener = l
	o.SecureServing.BindPort = l.Addr().(*net.TCPAddr).Port
	o.Authentication.RemoteKubeConfigFileOptional = true
	o.Authorization.RemoteKubeConfigFileOptional = true
	require.NoError(t, o.Validate())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, o.serve(ctx, nil))

	// The certificate is self-signed: trust it as it is.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path string) (int, string) {
		resp, err := client.Get("https://" + l.Addr().String() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/readyz", "/livez"} {
		code, body := get(p)
		assert.Equal(t, http.StatusOK, code, "%s: %s", p, body)
	}
	code, body := get("/metrics")
	assert.Equal(t, http.StatusForbidden, code, "%s", body)
	assert.NotContains(t, body, "fedmesh_syncer")

	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "no plain HTTP")
	}
}

// TestServerFlags keeps the serving flags of kube-controller-manager.
func TestServerFlags(t *testing.T) {
	o := NewServerOptions()
	fs := pflag.NewFlagSet("fedmesh-syncer", pflag.ContinueOnError)
	o.AddFlags(fs)
	require.NoError(t, fs.Parse([]string{"--secure-port=1234", "--bind-address=127.0.0.1", "--cert-dir=/tmp/certs",
		"--authentication-kubeconfig=a", "--authorization-kubeconfig=b"}))
	assert.Equal(t, 1234, o.SecureServing.BindPort)
	assert.Equal(t, "127.0.0.1", o.SecureServing.BindAddress.String())
	assert.Equal(t, "/tmp/certs", o.SecureServing.ServerCert.CertDirectory)
	assert.Equal(t, "a", o.Authentication.RemoteKubeConfigFile)
	assert.Equal(t, "b", o.Authorization.RemoteKubeConfigFile)
	assert.Equal(t, DefaultSecurePort, NewServerOptions().SecureServing.BindPort)
	assert.Equal(t, []string{"/healthz", "/readyz", "/livez"}, NewServerOptions().Authorization.AlwaysAllowPaths)
}
