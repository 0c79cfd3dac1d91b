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

package syncer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadCRDs(t *testing.T) {
	crds, err := loadCRDs()
	require.NoError(t, err)
	var names []string
	for _, c := range crds {
		names = append(names, c.name)
		assert.Equal(t, c.hash, c.obj.GetAnnotations()[CRDHashAnnotation])
		assert.Len(t, c.hash, 64)
		assert.Equal(t, ManagedByValue, c.obj.GetLabels()[ManagedByLabel])
	}
	assert.Equal(t, []string{"globaltrafficpolicies.flomesh.io", "serviceexports.flomesh.io", "serviceimports.flomesh.io"}, names)

	again, err := loadCRDs()
	require.NoError(t, err)
	for i := range crds {
		assert.Equal(t, crds[i].hash, again[i].hash, "the digest of %s is stable", crds[i].name)
	}
}
