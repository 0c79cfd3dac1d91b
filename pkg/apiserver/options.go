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
	"io"
	"net"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	basecompatibility "k8s.io/component-base/compatibility"
	baseversion "k8s.io/component-base/version"
	netutils "k8s.io/utils/net"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	fedmeshopenapi "github.com/fedmesh/fedmesh/generated/openapi"
	fedmeshadmission "github.com/fedmesh/fedmesh/pkg/admission"
	admissioninitializer "github.com/fedmesh/fedmesh/pkg/admission/initializer"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
)

// DefaultEtcdPathPrefix is where fedmesh keeps its objects in etcd.
const DefaultEtcdPathPrefix = "/registry/flomesh.io"

// Options are the command-line options of fedmesh-apiserver.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions
	// ComponentGlobalsRegistry holds the effective version and feature gates.
	ComponentGlobalsRegistry basecompatibility.ComponentGlobalsRegistry

	// Standalone serves without a control-plane cluster: no delegated
	// authentication or authorization, no admission that needs the core API.
	Standalone bool

	// Clusterset tunes the connections to the member clusters.
	Clusterset clusterset.Options

	// ServiceImportHistoryBytes bounds the estimated size of the changes
	// of ServiceImports kept for watches that resume.
	ServiceImportHistoryBytes int64

	// DataDir is where the embedded etcd keeps its data when no
	// --etcd-servers are given.
	DataDir string

	StdOut io.Writer
	StdErr io.Writer

	// embeddedEtcd is set by Config when it started one.
	embeddedEtcd *EmbeddedEtcd
	// client and informers reach the server's own API over loopback. One
	// factory feeds admission and the clusterset and cluster-protection
	// controllers, so every Cluster, kubeconfig included, is cached once.
	// Config makes them.
	client    versioned.Interface
	informers fedinformers.SharedInformerFactory
}

// NewOptions returns the default options.
func NewOptions(out, errOut io.Writer) *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(
			DefaultEtcdPathPrefix,
			Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion),
		),
		ComponentGlobalsRegistry:  compatibility.DefaultComponentGlobalsRegistry,
		DataDir:                   "fedmesh-data",
		Clusterset:                clusterset.DefaultOptions(),
		ServiceImportHistoryBytes: serviceimport.DefaultHistoryBytes,
		StdOut:                    out,
		StdErr:                    errOut,
	}
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	// fedmesh follows the Kubernetes version of the libraries it is built
	// on; the registry's Set, called once flags are parsed, applies it.
	_, _ = o.ComponentGlobalsRegistry.ComponentGlobalsOrRegister(basecompatibility.DefaultKubeComponent,
		basecompatibility.NewEffectiveVersionFromString(baseversion.DefaultKubeBinaryVersion, "", ""),
		utilfeature.DefaultMutableFeatureGate)
	// fedmesh's admission plugins, enabled by default and run after the
	// generic ones.
	fedmeshadmission.Register(o.RecommendedOptions.Admission.Plugins)
	o.RecommendedOptions.Admission.RecommendedPluginOrder = append(
		o.RecommendedOptions.Admission.RecommendedPluginOrder, fedmeshadmission.PluginNames...)
	o.RecommendedOptions.ExtraAdmissionInitializers = o.admissionInitializers
	return o
}

// admissionInitializers gives fedmesh's admission plugins the shared
// informers and a client over the server's loopback connection. It runs
// during Config, once the loopback configuration exists; standalone serves
// without admission and never calls it.
func (o *Options) admissionInitializers(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
	if err := o.loopbackClients(c); err != nil {
		return nil, err
	}
	return []admission.PluginInitializer{admissioninitializer.New(o.informers, o.client)}, nil
}

// loopbackClients makes the client and the shared informer factory of the
// server's own API, once.
func (o *Options) loopbackClients(c *genericapiserver.RecommendedConfig) error {
	if o.informers != nil {
		return nil
	}
	client, err := versioned.NewForConfig(c.LoopbackClientConfig)
	if err != nil {
		return err
	}
	o.client = client
	o.informers = fedinformers.NewSharedInformerFactory(client, 0)
	return nil
}

// AddFlags adds the flags of fedmesh-apiserver to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.RecommendedOptions.AddFlags(fs)
	o.ComponentGlobalsRegistry.AddFlags(fs)
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir,
		"Directory of the embedded etcd, which is started when --etcd-servers is empty.")
	fs.DurationVar(&o.Clusterset.UnavailableGrace, "member-unavailable-grace", o.Clusterset.UnavailableGrace,
		"How long a member cluster may be not Ready before its endpoints are withdrawn from the ServiceImports; a service's GlobalTrafficPolicy overrides it with spec.unavailableGraceSeconds.")
	o.Clusterset.Members.AddFlags(fs)
	fs.Int64Var(&o.ServiceImportHistoryBytes, "serviceimport-history-bytes", o.ServiceImportHistoryBytes,
		"Estimated size of the ServiceImport changes kept, 10,000 at most, for watches that resume from an older "+
			"version; a watch resuming from a change no longer kept is answered 410 Gone and relists.")
	o.Clusterset.Namespaces.AddFlags(fs)
	fs.BoolVar(&o.Standalone, "standalone", o.Standalone,
		"Serve without a control-plane cluster, for development and tests: clients authenticate only by "+
			"certificates of --client-ca-file, only the system:masters group is authorized, and admission "+
			"plugins that need the core Kubernetes API are off.")
}

// Complete fills in what the flags left out. It starts nothing: options are
// validated first, and the embedded etcd starts in Config.
func (o *Options) Complete() error {
	if o.Standalone {
		ro := o.RecommendedOptions
		ro.CoreAPI = nil
		ro.Admission = nil
		ro.Features.EnablePriorityAndFairness = false
		ro.Authentication.RemoteKubeConfigFileOptional = true
		ro.Authorization.RemoteKubeConfigFileOptional = true
	}
	return nil
}

// embedEtcd tells whether fedmesh-apiserver runs its own etcd: when no
// --etcd-servers are given.
func (o *Options) embedEtcd() bool {
	return len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	ro := *o.RecommendedOptions
	if o.embedEtcd() {
		if o.DataDir == "" {
			errs = append(errs, fmt.Errorf("--data-dir is required when --etcd-servers is empty"))
		}
		// The embedded etcd's address is known once it listens, in Config;
		// the other etcd options are checked as if it were given.
		etcd := *ro.Etcd
		etcd.StorageConfig.Transport.ServerList = []string{"http://127.0.0.1"}
		ro.Etcd = &etcd
	}
	if o.ServiceImportHistoryBytes <= 0 {
		errs = append(errs, fmt.Errorf("--serviceimport-history-bytes must be positive"))
	}
	errs = append(errs, ro.Validate()...)
	errs = append(errs, o.ComponentGlobalsRegistry.Validate()...)
	return utilerrors.NewAggregate(errs)
}

// Config returns the server configuration the options describe, which
// Validate has accepted. Without --etcd-servers it first starts the
// embedded etcd, which Run stops.
func (o *Options) Config() (*Config, error) {
	if o.embedEtcd() && o.embeddedEtcd == nil {
		e, err := StartEmbeddedEtcd(o.DataDir)
		if err != nil {
			return nil, err
		}
		o.embeddedEtcd = e
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{e.ClientURL}
	}
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts(
		"localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("error creating self-signed certificates: %w", err)
	}

	serverConfig := genericapiserver.NewRecommendedConfig(Codecs)
	namer := openapi.NewDefinitionNamer(Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(fedmeshopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIConfig.Info.Title = "fedmesh"
	serverConfig.OpenAPIConfig.Info.Version = "v1alpha1"
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(fedmeshopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "fedmesh"
	serverConfig.OpenAPIV3Config.Info.Version = "v1alpha1"

	serverConfig.FeatureGate = o.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	serverConfig.EffectiveVersion = o.ComponentGlobalsRegistry.EffectiveVersionFor(basecompatibility.DefaultKubeComponent)

	if err := o.RecommendedOptions.ApplyTo(serverConfig); err != nil {
		return nil, err
	}
	// Admission made them already, unless it is off.
	if err := o.loopbackClients(serverConfig); err != nil {
		return nil, err
	}
	return &Config{
		GenericConfig: serverConfig,
		ExtraConfig: ExtraConfig{
			Clusterset:   o.Clusterset,
			Client:       o.client,
			Informers:    o.informers,
			ControlPlane: serverConfig.ClientConfig,
		},
	}, nil
}

// Run starts fedmesh-apiserver and serves until ctx is done.
func (o *Options) Run(ctx context.Context) error {
	config, err := o.Config()
	if o.embeddedEtcd != nil {
		defer o.embeddedEtcd.Stop()
	}
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	// Set before the server starts, and so before the first change.
	server.Imports.HistoryBytes = o.ServiceImportHistoryBytes
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}
