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
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

// TestUnavailableGracePerPolicy hangs a member's kube-apiserver (SIGSTOP)
// and watches three services it exports: one whose policy says 0 loses its
// endpoints as soon as the member is not Ready, one without a policy keeps
// them for the server's --member-unavailable-grace, and one whose policy
// says an hour keeps them past that, until its policy is changed to 0.
// All three come back when the member resumes.
func TestUnavailableGracePerPolicy(t *testing.T) {
	const serverGrace = 8 * time.Second
	f := framework.Start(t, framework.Options{
		Members:                   []string{"cluster-1", "cluster-2"},
		FedmeshArgs:               []string{fmt.Sprintf("--member-unavailable-grace=%s", serverGrace)},
		WithoutControllerManagers: true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for i, name := range []string{"cluster-1", "cluster-2"} {
		register(t, ctx, f, name, int32(81+i))
	}
	const ns = "grace"
	createNamespaces(t, ctx, f, ns)
	m := f.Member("cluster-2")
	_, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	policies := f.ControlPlane.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies(ns)
	for _, svc := range []struct {
		name string
		// grace is the policy's unavailableGraceSeconds; nil: no policy.
		grace *int32
	}{{"at-once", ptr.To[int32](0)}, {"server-grace", nil}, {"an-hour", ptr.To[int32](3600)}} {
		_, err := m.Kube().CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc.name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).Create(ctx, &v1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Name: svc.name},
			Spec: v1alpha1.ServiceExportSpec{Rules: []v1alpha1.ServiceExportRule{{
				PortNumber: 8080, Path: "/" + svc.name, PathType: v1alpha1.PathTypePrefix,
			}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		if svc.grace != nil {
			_, err = policies.Create(ctx, &v1alpha1.GlobalTrafficPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: svc.name},
				Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.ActiveActiveLbType, UnavailableGraceSeconds: svc.grace},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
		}
	}
	all := []string{"at-once", "server-grace", "an-hour"}
	served := func() map[string]bool {
		out := map[string]bool{}
		for _, name := range all {
			si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
			out[name] = err == nil && len(si.Spec.Ports) > 0 && len(si.Spec.Ports[0].Endpoints) > 0
		}
		return out
	}
	everything := map[string]bool{"at-once": true, "server-grace": true, "an-hour": true}
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, everything, served()) }, 15*time.Second, 100*time.Millisecond)

	require.NoError(t, m.PauseAPIServer())
	paused := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			_ = m.ResumeAPIServer()
		}
	}()
	waitReady(t, ctx, f, "cluster-2", metav1.ConditionFalse, 30*time.Second)
	notReady := time.Now()
	t.Logf("Ready=False %v after SIGSTOP", notReady.Sub(paused).Round(10*time.Millisecond))

	// Grace 0: withdrawn with the Ready=False that fedmesh writes, within
	// a poll or two; the others stay.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, map[string]bool{"at-once": false, "server-grace": true, "an-hour": true}, served())
	}, 3*time.Second, 50*time.Millisecond, "the policy of 0 withdraws at once")
	t.Logf("grace 0: withdrawn %v after Ready=False was seen", time.Since(notReady).Round(10*time.Millisecond))

	// The server's grace: kept until it ends, then withdrawn. Ready=False
	// was seen after the member's grace started, so the withdrawal comes
	// at most serverGrace after it, and (allowing for the status write
	// and the poll) not much sooner.
	var withdrawn time.Duration
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := served()
		if assert.False(c, got["server-grace"], "the server's grace ends") {
			withdrawn = time.Since(notReady)
		}
		assert.True(c, got["an-hour"])
	}, serverGrace+5*time.Second, 50*time.Millisecond)
	t.Logf("no policy: withdrawn %v after Ready=False was seen (--member-unavailable-grace=%v)", withdrawn.Round(10*time.Millisecond), serverGrace)
	assert.Greater(t, withdrawn, serverGrace-2*time.Second, "kept for the server's grace")

	// An hour: still there a while after the server's grace.
	for range 20 {
		time.Sleep(150 * time.Millisecond)
		require.True(t, served()["an-hour"], "the policy of an hour keeps the endpoints")
	}
	t.Logf("an hour: still served %v after Ready=False was seen", time.Since(notReady).Round(10*time.Millisecond))

	// A shorter grace, written while the member is down, applies at once.
	changed := time.Now()
	_, err = policies.Patch(ctx, "an-hour", types.MergePatchType, []byte(`{"spec":{"unavailableGraceSeconds":0}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.False(c, served()["an-hour"])
	}, 5*time.Second, 50*time.Millisecond, "a policy changed to 0 withdraws at once")
	t.Logf("changed to 0: withdrawn %v after the patch", time.Since(changed).Round(10*time.Millisecond))

	require.NoError(t, m.ResumeAPIServer())
	resumed = true
	waitReady(t, ctx, f, "cluster-2", metav1.ConditionTrue, 30*time.Second)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, everything, served()) }, 10*time.Second, 100*time.Millisecond,
		"every import is served again once the member is Ready")
}
