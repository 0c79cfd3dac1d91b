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
package globaltrafficpolicy

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

func policy(keys ...string) *flomesh.GlobalTrafficPolicy {
	p := &flomesh.GlobalTrafficPolicy{}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, flomesh.TrafficTarget{ClusterKey: k})
	}
	return p
}

func TestWritesHoldFromAdmissionToTheEnd(t *testing.T) {
	w := NewWrites()
	create := w.start()
	// Admission sees the keys held already: a Cluster released after this
	// point was released after the write began.
	admit := func(context.Context, runtime.Object) error {
		assert.True(t, w.Naming("k1"), "held during admission")
		return nil
	}
	require.NoError(t, create.createValidation(admit)(context.Background(), policy("k1", "k1", "k2")))
	assert.True(t, w.Naming("k2"))
	assert.False(t, w.Naming("k3"))

	// Another write naming k1, refused by admission, holds it until it ends.
	update := w.start()
	refuse := func(context.Context, runtime.Object, runtime.Object) error { return errors.New("refused") }
	assert.Error(t, update.updateValidation(refuse)(context.Background(), policy("k1", "k3"), policy()))
	// Storage tries an update again on a newer version: both are held.
	assert.Error(t, update.updateValidation(refuse)(context.Background(), policy("k4"), policy()))

	create.done()
	assert.True(t, w.Naming("k1"), "the update still holds it")
	assert.False(t, w.Naming("k2"))
	assert.True(t, w.Naming("k3"))
	assert.True(t, w.Naming("k4"))

	update.done()
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		assert.False(t, w.Naming(k), k)
	}
	assert.Empty(t, w.keys, "nothing left behind")

	// Without admission (a server without plugins), the keys are held all
	// the same.
	bare := w.start()
	require.NoError(t, bare.createValidation(nil)(context.Background(), policy("k5")))
	require.NoError(t, bare.updateValidation(nil)(context.Background(), policy("k6"), policy()))
	assert.True(t, w.Naming("k5"))
	assert.True(t, w.Naming("k6"))
	bare.done()
	assert.Empty(t, w.keys)
}
