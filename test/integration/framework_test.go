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
package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/test/framework"
)

// TestMemberStopAndRestart checks the fault the framework offers: a member
// killed as in a crash is unreachable, and comes back on the same address
// with its data and a working kube-controller-manager.
func TestMemberStopAndRestart(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}, WithoutFedmesh: true})
	m := f.Member("cluster-1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The controller manager's work: a default ServiceAccount in every
	// namespace, and deleted namespaces that really go.
	defaultServiceAccount := func(ns string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := m.Kube().CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			assert.NoError(c, err, "namespace %s has its default ServiceAccount", ns)
		}, 20*time.Second, 100*time.Millisecond)
	}
	deleted := func(ns string) {
		t.Helper()
		require.NoError(t, m.Kube().CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := m.Kube().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "namespace %s is gone: %v", ns, err)
		}, 20*time.Second, 100*time.Millisecond)
	}

	_, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	defaultServiceAccount("kept")

	before := m.ControllerManagerPID()
	require.NotZero(t, before)
	m.Stop()
	assert.Zero(t, m.ControllerManagerPID(), "the controller manager stops with its cluster")
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	_, err = m.Kube().CoreV1().Namespaces().Get(short, "kept", metav1.GetOptions{})
	cancelShort()
	assert.Error(t, err, "a stopped member does not answer")

	require.NoError(t, m.Start(ctx))
	_, err = m.Kube().CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{})
	assert.NoError(t, err, "a restarted member keeps its data")
	after := m.ControllerManagerPID()
	assert.NotZero(t, after)
	assert.NotEqual(t, before, after, "a new controller manager")
	_, err = m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	defaultServiceAccount("later")
	deleted("later")
}
