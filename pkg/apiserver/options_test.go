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
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
)

// Complete and Validate start nothing: bad flags are refused before the
// embedded etcd creates its data directory, let alone listens.
func TestCompleteAndValidateStartNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(o *Options, dir string)
		wantErr string // "" when the options are valid
	}{
		{
			name: "embedded etcd, valid",
			set:  func(o *Options, dir string) { o.DataDir = dir },
		},
		{
			name: "no ServiceImport history",
			set: func(o *Options, dir string) {
				o.DataDir = dir
				o.ServiceImportHistoryBytes = 0
			},
			wantErr: "--serviceimport-history-bytes must be positive",
		},
		{
			name:    "embedded etcd without a data dir",
			set:     func(o *Options, dir string) { o.DataDir = "" },
			wantErr: "--data-dir is required",
		},
		{
			name: "embedded etcd, another flag bad",
			set: func(o *Options, dir string) {
				o.DataDir = dir
				o.RecommendedOptions.SecureServing.BindPort = -1
			},
			wantErr: "--secure-port",
		},
		{
			name: "external etcd, a bad etcd flag",
			set: func(o *Options, dir string) {
				o.DataDir = dir
				o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{"http://127.0.0.1:2379"}
				o.RecommendedOptions.Etcd.EtcdServersOverrides = []string{"no-separators"}
			},
			wantErr: "--etcd-servers-overrides",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etcd")
			o := NewOptions(io.Discard, io.Discard)
			o.Standalone = true
			tc.set(o, dir)
			require.NoError(t, o.Complete())
			err := o.Validate()
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
			assert.Nil(t, o.embeddedEtcd, "no etcd started before Config")
			_, statErr := os.Stat(dir)
			assert.True(t, os.IsNotExist(statErr), "the data dir is created by Config, not before: %v", statErr)
		})
	}
}

// Admission and the clusterset controller share one informer factory, so
// every Cluster, kubeconfig included, is watched and cached once.
func TestOneInformerFactory(t *testing.T) {
	o := NewOptions(io.Discard, io.Discard)
	c := &genericapiserver.RecommendedConfig{}
	c.LoopbackClientConfig = &rest.Config{Host: "https://127.0.0.1:1"}
	_, err := o.admissionInitializers(c)
	require.NoError(t, err)
	admissionFactory := o.informers
	require.NotNil(t, admissionFactory)
	require.NoError(t, o.loopbackClients(c))
	assert.Same(t, admissionFactory, o.informers, "Config must reuse admission's factory, not make a second")
}
