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

package membercrds

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedmesh/fedmesh/pkg/memberrbac"
)

func TestLoad(t *testing.T) {
	crds, err := Load()
	require.NoError(t, err)
	var names []string
	for _, c := range crds {
		names = append(names, c.Name)
		assert.Equal(t, c.Hash, c.Object.GetAnnotations()[HashAnnotation])
		assert.Len(t, c.Hash, 64)
		assert.Equal(t, managedByValue, c.Object.GetLabels()[managedByLabel])
	}
	assert.Equal(t, []string{"globaltrafficpolicies.flomesh.io", "serviceexports.flomesh.io", "serviceimports.flomesh.io"}, names)
	// fedmesh's identity may touch these CRDs by name only: the names it
	// is granted must be those it installs.
	assert.Equal(t, names, memberrbac.CRDNames, "memberrbac.CRDNames")

	again, err := Load()
	require.NoError(t, err)
	for i := range crds {
		assert.Equal(t, crds[i].Hash, again[i].Hash, "the digest of %s is stable", crds[i].Name)
	}
}
