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

package imports

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// ReservedNamespaces never federate, whatever the configuration: those of
// the cluster's own system, where an import or policy would be written
// next to the cluster's control components, and fedmesh's own (its
// identity in members, its deployment and the members' credentials on the
// control plane). An export there is invalid and nothing is imported
// there, so no member can make fedmesh write into another member's
// kube-system.
var ReservedNamespaces = []string{"fedmesh-members", "fedmesh-system", "kube-node-lease", "kube-public", "kube-system"}

// ReasonNamespaceNotFederated is the reason of the Valid=False condition
// of an export in a namespace that does not federate.
const ReasonNamespaceNotFederated = "NamespaceNotFederated"

// Namespaces says which namespaces federate: every namespace but the
// reserved ones or, when Allowed is set, only those of Allowed that are not
// reserved. Sameness of namespaces across members is the federation's
// premise (KEP-1645); Allowed is how an administrator narrows it to the
// namespaces whose owners agree on it.
type Namespaces struct {
	// Allowed, when not empty, lists the only namespaces that federate.
	Allowed []string
}

// Federates reports whether namespace federates and, when it does not,
// says why, in words fit for a condition message.
func (n Namespaces) Federates(namespace string) (bool, string) {
	if slices.Contains(ReservedNamespaces, namespace) {
		return false, fmt.Sprintf("namespace %s never federates: it is reserved to the cluster's system or to fedmesh", namespace)
	}
	if len(n.Allowed) > 0 && !slices.Contains(n.Allowed, namespace) {
		return false, fmt.Sprintf("namespace %s is not one of the namespaces the federation allows (fedmesh-apiserver --federated-namespaces)", namespace)
	}
	return true, ""
}

// AddFlags adds the flag that narrows the namespaces that federate, which
// fedmesh-apiserver and fedmesh-syncer must be given alike.
func (n *Namespaces) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&n.Allowed, "federated-namespaces", n.Allowed,
		"The only namespaces whose services federate (comma-separated); empty for every namespace but "+
			strings.Join(ReservedNamespaces, ", ")+", which never federate. Give fedmesh-apiserver and fedmesh-syncer the same list.")
}
