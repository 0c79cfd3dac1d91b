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
package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	flomeshac "github.com/fedmesh/fedmesh/generated/applyconfiguration/flomesh/v1alpha1"
)

func newCluster(t *testing.T, name string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterSpec{
			GatewayHost: "192.168.1.110",
			GatewayPort: 81,
			Kubeconfig:  memberKubeconfig(t, name),
		},
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterCRUD(t *testing.T) {
	ctx := ctxFor(t)
	clusters := newClient(t).FlomeshV1alpha1().Clusters()

	created, err := clusters.Create(ctx, newCluster(t, "crud-1"), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "default", created.Spec.Region, "region defaulted")
	assert.Equal(t, "default", created.Spec.Zone, "zone defaulted")
	assert.Equal(t, "default", created.Spec.Group, "group defaulted")
	assert.Equal(t, "default/default/default/crud-1", created.Status.ClusterKey)
	assert.Equal(t, int64(1), created.Generation)

	got, err := clusters.Get(ctx, "crud-1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, created.UID, got.UID)

	list, err := clusters.List(ctx, metav1.ListOptions{FieldSelector: "status.clusterKey=default/default/default/crud-1"})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	assert.Equal(t, "crud-1", list.Items[0].Name)

	got.Spec.Region = "eu"
	updated, err := clusters.Update(ctx, got, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "eu/default/default/crud-1", updated.Status.ClusterKey, "key follows the spec")
	assert.Equal(t, int64(2), updated.Generation, "spec change bumps generation")

	require.NoError(t, clusters.Delete(ctx, "crud-1", metav1.DeleteOptions{}))
	_, err = clusters.Get(ctx, "crud-1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "deleted cluster is gone, got %v", err)
}

func TestClusterValidationNamesTheField(t *testing.T) {
	ctx := ctxFor(t)
	clusters := newClient(t).FlomeshV1alpha1().Clusters()
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.Cluster)
		field  string
	}{
		{"port out of range", func(c *v1alpha1.Cluster) { c.Spec.GatewayPort = 70000 }, "spec.gatewayPort"},
		{"bad region", func(c *v1alpha1.Cluster) { c.Spec.Region = "EU_West" }, "spec.region"},
		{"bad gateway host", func(c *v1alpha1.Cluster) { c.Spec.GatewayHost = "not a host" }, "spec.gatewayHost"},
		{"kubeconfig that does not parse", func(c *v1alpha1.Cluster) { c.Spec.Kubeconfig = "{{{" }, "spec.kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "invalid")
			tc.mutate(c)
			_, err := clusters.Create(ctx, c, metav1.CreateOptions{})
			require.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
			status := err.(apierrors.APIStatus).Status()
			require.NotNil(t, status.Details)
			var fields []string
			for _, c := range status.Details.Causes {
				fields = append(fields, c.Field)
			}
			assert.Contains(t, fields, tc.field)
		})
	}
}

func TestClusterWatch(t *testing.T) {
	ctx := ctxFor(t)
	clusters := newClient(t).FlomeshV1alpha1().Clusters()
	w, err := clusters.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=watched"})
	require.NoError(t, err)
	defer w.Stop()

	c, err := clusters.Create(ctx, newCluster(t, "watched"), metav1.CreateOptions{})
	require.NoError(t, err)
	c.Spec.GatewayPort = 82
	_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, clusters.Delete(ctx, "watched", metav1.DeleteOptions{}))

	for _, want := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		select {
		case ev := <-w.ResultChan():
			require.Equal(t, want, ev.Type)
			assert.Equal(t, "watched", ev.Object.(*v1alpha1.Cluster).Name)
		case <-ctx.Done():
			t.Fatalf("no %s event", want)
		}
	}
}

func TestStatusAndSpecWritersDoNotClobberEachOther(t *testing.T) {
	ctx := ctxFor(t)
	clusters := newClient(t).FlomeshV1alpha1().Clusters()
	c, err := clusters.Create(ctx, newCluster(t, "split"), metav1.CreateOptions{})
	require.NoError(t, err)

	// A status writer that also changes the spec changes only the status.
	c.Status.KubernetesVersion = "v1.37.2"
	c.Status.ExportCount = 3
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Connected"})
	c.Spec.GatewayPort = 99
	afterStatus, err := clusters.UpdateStatus(ctx, c, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(81), afterStatus.Spec.GatewayPort, "status update left spec alone")
	assert.Equal(t, "v1.37.2", afterStatus.Status.KubernetesVersion)
	assert.Equal(t, int32(3), afterStatus.Status.ExportCount)
	assert.Equal(t, int64(1), afterStatus.Generation)

	// A spec writer that also changes the status changes only the spec.
	afterStatus.Spec.GatewayPort = 82
	afterStatus.Status.KubernetesVersion = "forged"
	afterSpec, err := clusters.Update(ctx, afterStatus, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(82), afterSpec.Spec.GatewayPort)
	assert.Equal(t, "v1.37.2", afterSpec.Status.KubernetesVersion, "spec update left status alone")
	assert.True(t, meta.IsStatusConditionTrue(afterSpec.Status.Conditions, "Ready"))

	// The same holds for policies.
	policies := newClient(t).FlomeshV1alpha1().GlobalTrafficPolicies("split")
	p, err := policies.Create(ctx, failOverPolicy("httpbin"), metav1.CreateOptions{})
	require.NoError(t, err)
	p.Status.Targets = []v1alpha1.TargetStatus{{ClusterKey: "default/default/default/cluster-1", Known: true}}
	p.Spec.LbType = v1alpha1.ActiveActiveLbType
	pStatus, err := policies.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.FailOverLbType, pStatus.Spec.LbType)
	require.Len(t, pStatus.Status.Targets, 1)
	pStatus.Spec.LbType = v1alpha1.ActiveActiveLbType
	pStatus.Status.Targets = nil
	pSpec, err := policies.Update(ctx, pStatus, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.ActiveActiveLbType, pSpec.Spec.LbType)
	assert.Len(t, pSpec.Status.Targets, 1, "spec update left status alone")
}

func TestOptimisticConcurrency(t *testing.T) {
	ctx := ctxFor(t)
	clusters := newClient(t).FlomeshV1alpha1().Clusters()
	c, err := clusters.Create(ctx, newCluster(t, "occ"), metav1.CreateOptions{})
	require.NoError(t, err)

	first := c.DeepCopy()
	first.Spec.GatewayPort = 90
	_, err = clusters.Update(ctx, first, metav1.UpdateOptions{})
	require.NoError(t, err)

	stale := c.DeepCopy()
	stale.Spec.GatewayPort = 91
	_, err = clusters.Update(ctx, stale, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsConflict(err), "a write from a stale read conflicts, got %v", err)

	_, err = clusters.UpdateStatus(ctx, stale, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsConflict(err), "so does a status write, got %v", err)
}

func failOverPolicy(name string) *v1alpha1.GlobalTrafficPolicy {
	return &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.GlobalTrafficPolicySpec{
			LbType: v1alpha1.FailOverLbType,
			Targets: []v1alpha1.TrafficTarget{
				{ClusterKey: "default/default/default/cluster-1"},
				{ClusterKey: "default/default/default/cluster-3"},
			},
		},
	}
}

func TestPolicyDefaultsAndValidation(t *testing.T) {
	ctx := ctxFor(t)
	policies := newClient(t).FlomeshV1alpha1().GlobalTrafficPolicies("defaults")

	p, err := policies.Create(ctx, &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "local"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.LocalityLbType, p.Spec.LbType, "lbType defaults to Locality")

	bad := failOverPolicy("typo")
	bad.Spec.Targets[1].ClusterKey = "default/default/cluster-3"
	_, err = policies.Create(ctx, bad, metav1.CreateOptions{})
	require.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
	assert.Contains(t, err.Error(), "spec.targets[1].clusterKey")
}

func TestServerSideApply(t *testing.T) {
	ctx := ctxFor(t)
	policies := newClient(t).FlomeshV1alpha1().GlobalTrafficPolicies("ssa")

	target := func(key string) *flomeshac.TrafficTargetApplyConfiguration {
		return flomeshac.TrafficTarget().WithClusterKey(key)
	}
	apply := flomeshac.GlobalTrafficPolicy("httpbin", "ssa").WithSpec(flomeshac.GlobalTrafficPolicySpec().
		WithLbType(v1alpha1.FailOverLbType).
		WithTargets(target("default/default/default/cluster-1")))
	p, err := policies.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "alice"})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.FailOverLbType, p.Spec.LbType)

	// Re-applying the same configuration is a no-op.
	again, err := policies.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "alice"})
	require.NoError(t, err)
	assert.Equal(t, p.ResourceVersion, again.ResourceVersion)

	// Another manager setting the same field to another value conflicts...
	other := flomeshac.GlobalTrafficPolicy("httpbin", "ssa").WithSpec(flomeshac.GlobalTrafficPolicySpec().
		WithLbType(v1alpha1.ActiveActiveLbType))
	_, err = policies.Apply(ctx, other, metav1.ApplyOptions{FieldManager: "bob"})
	require.True(t, apierrors.IsConflict(err), "want a field-manager conflict, got %v", err)
	assert.Contains(t, err.Error(), "alice")
	// ...unless it forces.
	forced, err := policies.Apply(ctx, other, metav1.ApplyOptions{FieldManager: "bob", Force: true})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.ActiveActiveLbType, forced.Spec.LbType)

	// A status applier shares no fields with the spec appliers: status is
	// reset out of spec writes and spec out of status writes.
	status := flomeshac.GlobalTrafficPolicy("httpbin", "ssa").WithStatus(flomeshac.GlobalTrafficPolicyStatus().
		WithConditions(metav1ac.Condition().WithType("Resolved").WithStatus(metav1.ConditionTrue).
			WithReason("AllTargetsKnown").WithMessage("").WithLastTransitionTime(metav1.Now())))
	withStatus, err := policies.ApplyStatus(ctx, status, metav1.ApplyOptions{FieldManager: "fedmesh"})
	require.NoError(t, err)
	assert.True(t, meta.IsStatusConditionTrue(withStatus.Status.Conditions, "Resolved"))
	assert.Equal(t, v1alpha1.ActiveActiveLbType, withStatus.Spec.LbType)

	// Status sent to the main resource is dropped, not applied.
	sneaky := flomeshac.GlobalTrafficPolicy("httpbin", "ssa").WithStatus(flomeshac.GlobalTrafficPolicyStatus().
		WithConditions(metav1ac.Condition().WithType("Resolved").WithStatus(metav1.ConditionFalse).
			WithReason("Forged").WithMessage("").WithLastTransitionTime(metav1.Now())))
	afterSneaky, err := policies.Apply(ctx, sneaky, metav1.ApplyOptions{FieldManager: "mallory", Force: true})
	require.NoError(t, err)
	assert.True(t, meta.IsStatusConditionTrue(afterSneaky.Status.Conditions, "Resolved"))
	for _, mf := range afterSneaky.ManagedFields {
		if mf.Manager == "fedmesh" {
			assert.Equal(t, "status", mf.Subresource)
		}
	}

	// An apply patch through the raw API (as kubectl apply --server-side does).
	raw, err := newClient(t).FlomeshV1alpha1().Clusters().Patch(ctx, "ssa-cluster", types.ApplyPatchType,
		[]byte(clusterYAML(t, "ssa-cluster")), metav1.PatchOptions{FieldManager: "kubectl", Force: ptr.To(true)})
	require.NoError(t, err)
	assert.Equal(t, "default/default/default/ssa-cluster", raw.Status.ClusterKey)
}

func clusterYAML(t *testing.T, name string) string {
	kc := memberKubeconfig(t, name)
	var b strings.Builder
	b.WriteString("apiVersion: flomesh.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: " + name + "\nspec:\n  gatewayHost: 127.0.0.1\n  gatewayPort: 81\n  kubeconfig: |+\n")
	for _, line := range strings.Split(kc, "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}
