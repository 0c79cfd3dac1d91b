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
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"
)

// EmbeddedEtcd is an etcd started inside fedmesh-apiserver, so that a
// development or single-replica install needs no etcd of its own.
type EmbeddedEtcd struct {
	etcd *embed.Etcd
	// ClientURL is where the embedded etcd serves clients.
	ClientURL string
}

// StartEmbeddedEtcd starts a single-member etcd storing its data in dataDir,
// listening on loopback ports chosen by the kernel so it never collides with
// another etcd on the machine.
func StartEmbeddedEtcd(dataDir string) (*EmbeddedEtcd, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating etcd data dir: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	loopback := []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}

	cfg := embed.NewConfig()
	cfg.Name = "fedmesh"
	cfg.Dir = abs
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = loopback, loopback
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = loopback, loopback
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd logs every closed listener as an error on a clean stop; the
	// server's /readyz reports an etcd that stops answering.
	cfg.LogLevel = "fatal"
	// etcd's own metrics and health endpoints are of no use embedded.
	cfg.ListenMetricsUrls = nil

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready after 60s")
	}
	clientURL := "http://" + e.Clients[0].Addr().String()
	klog.InfoS("Started embedded etcd; pass --etcd-servers to use an external one", "dataDir", abs, "url", clientURL)
	return &EmbeddedEtcd{etcd: e, ClientURL: clientURL}, nil
}

// Stop stops the embedded etcd.
func (e *EmbeddedEtcd) Stop() {
	e.etcd.Close()
}
