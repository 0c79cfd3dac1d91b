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

package initializer

import (
	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
)

type pluginInitializer struct {
	informers informers.SharedInformerFactory
	client    versioned.Interface
}

var _ admission.PluginInitializer = pluginInitializer{}

// New returns an initializer that hands plugins the informer factory and
// the client.
func New(informers informers.SharedInformerFactory, client versioned.Interface) admission.PluginInitializer {
	return pluginInitializer{informers: informers, client: client}
}

// Initialize gives a plugin what its interfaces ask for.
func (i pluginInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(WantsFedmeshInformerFactory); ok {
		wants.SetFedmeshInformerFactory(i.informers)
	}
	if wants, ok := plugin.(WantsFedmeshClientset); ok {
		wants.SetFedmeshClientset(i.client)
	}
}
