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
// Package apiserver assembles fedmesh-apiserver: its scheme, its
// configuration and the flomesh.io API group it serves.
package apiserver

import (
	"context"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	kubeinformers "k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/install"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/protection"
	clusterstorage "github.com/fedmesh/fedmesh/pkg/registry/cluster"
	gtpstorage "github.com/fedmesh/fedmesh/pkg/registry/globaltrafficpolicy"
	"github.com/fedmesh/fedmesh/pkg/registry/serviceimport"
)

// protectionWorkers is how many workers the cluster-protection controller
// runs for each of its queues.
const protectionWorkers = 2

var (
	// Scheme knows every type fedmesh-apiserver serves.
	Scheme = runtime.NewScheme()
	// Codecs serializes the types of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)

	// The generic server decodes its options (ListOptions, DeleteOptions...)
	// as the unversioned meta types.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// ExtraConfig holds fedmesh's own configuration.
type ExtraConfig struct {
	// Clusterset tunes the connections to the member clusters.
	Clusterset clusterset.Options
	// DisableClusterset serves the API without connecting to members, for
	// tests that feed the imports themselves.
	DisableClusterset bool
	// DisableClusterProtection serves the API without the controller that
	// keeps Clusters while policies target them and writes the status of
	// policies, for tests that write those objects as they please.
	DisableClusterProtection bool

	// Client reaches the server's own API over loopback.
	Client versioned.Interface
	// Informers is the one informer factory of the server's own API, shared
	// by admission, the clusterset controller and the cluster-protection
	// controller; the server starts it.
	Informers fedinformers.SharedInformerFactory
	// ControlPlane reaches the core API of the control plane, where the
	// members' credentials Secrets are; nil when standalone.
	ControlPlane *restclient.Config
}

// Config is the configuration of fedmesh-apiserver.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

// Server is a running fedmesh-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
	// Imports holds the computed ServiceImports the server serves.
	Imports *serviceimport.Aggregate
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config whose defaults are filled in; only Complete makes one.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in the fields not set.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
	}}
}

// New returns a fedmesh-apiserver with the flomesh.io group installed.
func (c completedConfig) New() (*Server, error) {
	genericServer, err := c.GenericConfig.New("fedmesh-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	s := &Server{GenericAPIServer: genericServer, Imports: serviceimport.NewAggregate(serviceimport.DefaultHistory)}

	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(flomesh.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	getter := c.GenericConfig.RESTOptionsGetter

	clusters, clusterStatus, err := clusterstorage.NewREST(Scheme, getter, c.ExtraConfig.Clusterset.Members.Policy)
	if err != nil {
		return nil, err
	}
	policies, policyStatus, err := gtpstorage.NewREST(Scheme, getter)
	if err != nil {
		return nil, err
	}
	// The group is installed last: the serviceimports storage serves no
	// read until the clusterset controller has filled the imports.
	install := func(importsComplete func() error) (*Server, error) {
		apiGroupInfo.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
			"clusters":                     clusters,
			"clusters/status":              clusterStatus,
			"globaltrafficpolicies":        policies,
			"globaltrafficpolicies/status": policyStatus,
			"serviceimports":               serviceimport.NewREST(s.Imports, importsComplete),
		}
		if err := s.GenericAPIServer.InstallAPIGroup(&apiGroupInfo); err != nil {
			return nil, err
		}
		return s, nil
	}
	informers := c.ExtraConfig.Informers
	if informers == nil {
		return install(nil)
	}
	var controller *clusterset.Controller
	var secrets kubeinformers.SharedInformerFactory
	if !c.ExtraConfig.DisableClusterset {
		// The credentials Secrets of members are read from the control
		// plane, in their namespace only; a standalone server has none.
		var secretInformer corev1informers.SecretInformer
		if cfg := c.ExtraConfig.ControlPlane; cfg != nil {
			kube, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return nil, err
			}
			secrets = kubeinformers.NewSharedInformerFactoryWithOptions(kube, 0,
				kubeinformers.WithNamespace(c.ExtraConfig.Clusterset.Members.SecretsNamespace))
			secretInformer = secrets.Core().V1().Secrets()
		}
		// Made before the informers start, so that its informers start
		// with them.
		controller = clusterset.New(c.ExtraConfig.Client, informers, secretInformer, s.Imports, c.ExtraConfig.Clusterset)
	}
	var protector *protection.Controller
	if !c.ExtraConfig.DisableClusterProtection {
		// The policy storage tells the controller which policy writes are
		// on their way: it releases no Cluster they name.
		protector, err = protection.NewController(c.ExtraConfig.Client, informers, s.Imports, policies.Writes())
		if err != nil {
			return nil, err
		}
	}
	s.GenericAPIServer.AddPostStartHookOrDie("start-fedmesh-informers", func(hc genericapiserver.PostStartHookContext) error {
		informers.Start(hc.Done())
		if secrets != nil {
			secrets.Start(hc.Done())
		}
		if controller != nil {
			go controller.Run(hc)
		}
		if protector != nil {
			go protector.Run(hc, protectionWorkers)
		}
		return nil
	})
	// Until every member known at the start has been reached, the imports
	// are those of some members only: a client that listed them would take
	// the others for deleted (clusterset.initialSync). The server is not
	// ready, and the storage refuses reads.
	var importsComplete func() error
	if controller != nil {
		importsComplete = controller.ImportsComplete
		if err := s.GenericAPIServer.AddReadyzChecks(healthz.NamedCheck("fedmesh-imports-complete", func(*http.Request) error {
			return importsComplete()
		})); err != nil {
			return nil, err
		}
	}
	// Until their caches sync, the admission plugins make writes wait, then
	// refuse them, and the imports are incomplete: the server is not ready.
	if err := s.GenericAPIServer.AddReadyzChecks(healthz.NamedCheck("fedmesh-informers-synced", func(*http.Request) error {
		// A done context asks without waiting.
		now, cancel := context.WithCancel(context.Background())
		cancel()
		for typ, synced := range informers.WaitForCacheSyncWithContext(now).Synced {
			if !synced {
				return fmt.Errorf("the %v informer has not synced", typ)
			}
		}
		return nil
	})); err != nil {
		return nil, err
	}
	return install(importsComplete)
}
