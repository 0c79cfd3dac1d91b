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
	"path/filepath"
	"sync/atomic"
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
// It runs without admission and without the cluster-protection controller,
// so that its tests write Clusters and policies as they please; the tests of
// protection start a second server on the same etcd that runs both
// (protectedServer).
var (
	adminConfig *rest.Config
	testCA      *pki.CA
	// testImports is the server's aggregate of ServiceImports, which the
	// tests feed directly.
	testImports *serviceimport.Aggregate

	// serverCtx ends every server the tests start; each reports on
	// serversStopped when it has stopped.
	serverCtx      context.Context
	serverDir      string
	serversStarted atomic.Int32
	serversStopped = make(chan error, 2)
	// testEtcd is the client URL of the embedded etcd the first server
	// started, which the others share under their own prefixes.
	testEtcd string
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
	serverDir = dir

	ctx, cancel := context.WithCancel(context.Background())
	serverCtx = ctx
	ca, err := pki.NewCA("fedmesh-test-ca")
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testCA = ca
	server, cfg, err := startServer(ctx, serverOptions{name: "main", configure: func(c *Config) error {
		// The tests feed the imports and write the status themselves.
		c.ExtraConfig.DisableClusterset = true
		c.ExtraConfig.DisableClusterProtection = true
		return nil
	}})
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "starting fedmesh-apiserver:", err)
		return 1
	}
	adminConfig = cfg
	testImports = server.Imports
	code := m.Run()
	cancel()
	for range serversStarted.Load() {
		select {
		case <-serversStopped:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "fedmesh-apiserver did not stop within 30s")
			return code
		}
	}
	return code
}

// serverOptions say how a test server differs from the default one.
type serverOptions struct {
	// name tells the servers' files apart, and is the etcd prefix of all
	// but the first, which starts the embedded etcd.
	name string
	// configure changes the configuration before the server is made.
	configure func(*Config) error
}

// startServer starts a fedmesh-apiserver that serves until ctx is done, and
// returns it and an admin's configuration, once it is ready.
func startServer(ctx context.Context, opts serverOptions) (*Server, *rest.Config, error) {
	dir := filepath.Join(serverDir, opts.name)
	caFile, err := testCA.WriteCert(serverDir, "ca")
	if err != nil {
		return nil, nil, err
	}
	admin, err := testCA.Client("admin", "system:masters")
	if err != nil {
		return nil, nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	o := NewOptions(os.Stdout, os.Stderr)
	o.Standalone = true
	o.DataDir = dir + "/etcd"
	if testEtcd != "" {
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{testEtcd}
		o.RecommendedOptions.Etcd.StorageConfig.Prefix = "/" + opts.name
	}
	o.RecommendedOptions.SecureServing.Listener = ln
	o.RecommendedOptions.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	o.RecommendedOptions.SecureServing.ServerCert.CertDirectory = dir + "/certs"
	o.RecommendedOptions.Authentication.ClientCert.ClientCA = caFile
	if err := o.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, nil, err
	}
	if err := o.Complete(); err != nil {
		return nil, nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	config, err := o.Config()
	if err != nil {
		return nil, nil, err
	}
	if o.embeddedEtcd != nil {
		testEtcd = o.embeddedEtcd.ClientURL
	}
	if err := opts.configure(config); err != nil {
		return nil, nil, err
	}
	server, err := config.Complete().New()
	if err != nil {
		return nil, nil, err
	}
	serversStarted.Add(1)
	go func() { serversStopped <- server.GenericAPIServer.PrepareRun().RunWithContext(ctx) }()

	cfg := &rest.Config{
		Host: "https://" + ln.Addr().String(),
		// The self-signed serving certificate is not what these tests check.
		TLSClientConfig: rest.TLSClientConfig{Insecure: true, CertData: admin.CertPEM, KeyData: admin.KeyPEM},
		QPS:             -1,
	}
	client, err := rest.UnversionedRESTClientFor(withNegotiation(cfg))
	if err != nil {
		return nil, nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		return client.Get().AbsPath("/readyz").Do(ctx).Error() == nil, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("not ready: %w", err)
	}
	return server, cfg, nil
}
