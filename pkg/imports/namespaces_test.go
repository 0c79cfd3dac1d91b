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
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNamespacesFederates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		allowed   []string
		namespace string
		want      bool
		why       string
	}{
		{name: "any namespace by default", namespace: "httpbin", want: true},
		{name: "kube-system never", namespace: "kube-system", why: "namespace kube-system never federates"},
		{name: "kube-public never", namespace: "kube-public", why: "reserved"},
		{name: "kube-node-lease never", namespace: "kube-node-lease", why: "reserved"},
		{name: "fedmesh's identity namespace never", namespace: "fedmesh-system", why: "reserved"},
		{name: "the credentials namespace never", namespace: "fedmesh-members", why: "reserved"},
		{name: "a listed namespace", allowed: []string{"httpbin", "web"}, namespace: "web", want: true},
		{name: "an unlisted namespace", allowed: []string{"httpbin"}, namespace: "web", why: "not one of the namespaces the federation allows"},
		{name: "a reserved namespace even when listed", allowed: []string{"kube-system"}, namespace: "kube-system", why: "never federates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Namespaces{Allowed: tc.allowed}.Federates(tc.namespace)
			assert.Equal(t, tc.want, got)
			if tc.want {
				assert.Empty(t, why)
			} else {
				assert.Contains(t, why, tc.why)
			}
		})
	}
}

func TestNamespacesFlag(t *testing.T) {
	var n Namespaces
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	n.AddFlags(fs)
	require.NoError(t, fs.Parse([]string{"--federated-namespaces=httpbin,web"}))
	assert.Equal(t, []string{"httpbin", "web"}, n.Allowed)
}

// TestNamespaceNotFederated checks that an export of a namespace that does
// not federate serves nothing, whatever it holds, and says why.
func TestNamespaceNotFederated(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces Namespaces
		namespace  string
	}{
		{name: "kube-system", namespace: "kube-system"},
		{name: "outside the allowed list", namespaces: Namespaces{Allowed: []string{"other"}}, namespace: ns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exports := walkthrough()
			imp := Compute(tc.namespaces, tc.namespace, name, exports)
			require.NotNil(t, imp, "the import exists, to carry the exports' conditions")
			assert.Empty(t, imp.Spec.Ports, "no endpoint")
			for _, e := range exports {
				assertCondition(t, imp, e.Cluster.Key, ConditionValid, metav1.ConditionFalse, ReasonNamespaceNotFederated)
			}
		})
	}
	imp := Compute(Namespaces{Allowed: []string{ns}}, ns, name, walkthrough())
	require.NotNil(t, imp)
	assert.NotEmpty(t, imp.Spec.Ports, "a listed namespace federates")
}
