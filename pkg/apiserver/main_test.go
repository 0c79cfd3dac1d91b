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
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
	"github.com/fedmesh/fedmesh/test/framework/pki"
)

// The tests of this package share one fedmesh-apiserver, started in-process
// in standalone mode on a loopback port with its embedded etcd: a real
// server and a real etcd, reached over HTTPS through the generated clients.
var (
	adminConfig *rest.Config
	testCA      *pki.CA
	// testImports is the server's aggregate of ServiceImports, which the
	// tests feed directly.
	testImports *serviceimport.Aggregate
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fedmesh-apiserver-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	cfg, err := startServer(ctx, dir, stopped)
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "starting fedmesh-apiserver:", err)
		return 1
	}
	adminConfig = cfg
	code := m.Run()
	cancel()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "fedmesh-apiserver did not stop within 30s")
	}
	return code
}

func startServer(ctx context.Context, dir string, stopped chan<- error) (*rest.Config, error) {
	ca, err := pki.NewCA("fedmesh-test-ca")
	if err != nil {
		return nil, err
	}
	testCA = ca
	caFile, err := ca.WriteCert(dir, "ca")
	if err != nil {
		return nil, err
	}
	admin, err := ca.Client("admin", "system:masters")
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := NewOptions(os.Stdout, os.Stderr)
	o.Standalone = true
	o.DataDir = dir + "/etcd"
	o.RecommendedOptions.SecureServing.Listener = ln
	o.RecommendedOptions.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	o.RecommendedOptions.SecureServing.ServerCert.CertDirectory = dir + "/certs"
	o.RecommendedOptions.Authentication.ClientCert.ClientCA = caFile
	if err := o.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	if err := o.Complete(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	config, err := o.Config()
	if err != nil {
		return nil, err
	}
	// The tests feed the imports themselves.
	config.ExtraConfig.DisableClusterset = true
	server, err := config.Complete().New()
	if err != nil {
		return nil, err
	}
	testImports = server.Imports
	go func() { stopped <- server.GenericAPIServer.PrepareRun().RunWithContext(ctx) }()

	cfg := &rest.Config{
		Host: "https://" + ln.Addr().String(),
		// The self-signed serving certificate is not what these tests check.
		TLSClientConfig: rest.TLSClientConfig{Insecure: true, CertData: admin.CertPEM, KeyData: admin.KeyPEM},
		QPS:             -1,
	}
	client, err := rest.UnversionedRESTClientFor(withNegotiation(cfg))
	if err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		return client.Get().AbsPath("/readyz").Do(ctx).Error() == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("not ready: %w", err)
	}
	return cfg, nil
}
