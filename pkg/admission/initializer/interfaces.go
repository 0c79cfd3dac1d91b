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

// Package initializer gives fedmesh's admission plugins what they need from
// the server: a shared informer factory of flomesh.io objects and a client,
// both over the server's own loopback connection.
package initializer

import (
	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
)

// WantsFedmeshInformerFactory is a plugin that reads flomesh.io objects
// from informer caches. It must ask for its informers (and add their
// indexers) in SetFedmeshInformerFactory: the server starts the factory
// after every plugin is initialized.
type WantsFedmeshInformerFactory interface {
	SetFedmeshInformerFactory(informers.SharedInformerFactory)
	admission.InitializationValidator
}

// WantsFedmeshClientset is a plugin that reads flomesh.io objects fresh
// from storage, where its informer cache may lag.
type WantsFedmeshClientset interface {
	SetFedmeshClientset(versioned.Interface)
	admission.InitializationValidator
}
