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

// Package admission gathers fedmesh's own admission plugins, one package
// each, for the server to register.
package admission

import (
	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/pkg/admission/clusterinuse"
	"github.com/fedmesh/fedmesh/pkg/admission/clusterkeys"
)

// PluginNames are the names of fedmesh's plugins, in the order they run.
// They are enabled by default; the server appends them to the recommended
// order, after the webhooks and policies: the finalizer ClusterInUseProtection
// puts on a new Cluster is added after any webhook has changed it, and
// writes that others refuse are refused before fedmesh's plugins read
// storage.
var PluginNames = []string{
	clusterkeys.PluginName,
	clusterinuse.PluginName,
}

// Register registers every plugin of fedmesh.
func Register(plugins *admission.Plugins) {
	clusterkeys.Register(plugins)
	clusterinuse.Register(plugins)
}
