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

package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/syncer"
	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/invariant"
)

// TestInvariantCheckerCatches proves the checker on a real federation: it
// finds the truth held once the churn has stopped, and, with the syncer
// killed so that nothing repairs them, it names an object lost, one
// stale, one that differs and an endpoint held twice.
func TestInvariantCheckerCatches(t *testing.T) {
	cfg := Current()
	f := framework.Start(t, FederationOptions(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	RegisterMembers(t, ctx, f)
	churn, err := StartChurn(ctx, f.Members, ChurnOptions{Namespace: "chaos", Names: 3, Interval: 100 * time.Millisecond})
	require.NoError(t, err)
	time.Sleep(2 * time.Second)
	churn.Stop()
	require.NoError(t, churn.Settle(ctx))
	checker := Checker(f)
	r, _, err := checker.Converge(ctx, cfg.ConvergeWithin)
	require.NoError(t, err)
	require.True(t, r.OK(), "%s", r)

	// From here on nothing repairs the members.
	f.Syncer().Kill()
	m1, m2 := f.Members[0], f.Members[1]
	imps := m2.Fedmesh().FlomeshV1alpha1().ServiceImports("chaos")
	// cluster-1 exports svc-lost and svc-twice; fedmesh-apiserver, still
	// running, computes their imports.
	for _, name := range []string{"svc-lost", "svc-twice"} {
		require.NoError(t, CreateExport(ctx, m1, "chaos", name))
	}
	want := func(name string) *v1alpha1.ServiceImport {
		var imp *v1alpha1.ServiceImport
		_, err := Until(ctx, 20*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
			cp, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("chaos").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			imp = syncer.DesiredImport("default/default/default/"+m2.Name, cp)
			return imp != nil, nil
		})
		require.NoError(t, err)
		return imp
	}
	// Lost: the import of svc-lost never reaches cluster-2.
	lost := want("svc-lost")
	// Stale: an import, as the syncer writes them, of a service nobody
	// exports.
	stale := lost.DeepCopy()
	stale.Name = "nobody-exports-this"
	_, err = imps.Create(ctx, stale, metav1.CreateOptions{})
	require.NoError(t, err)
	// Differ, and an endpoint twice: the import of svc-twice in cluster-2
	// lists cluster-1's endpoint twice.
	twice := want("svc-twice")
	twice.Spec.Ports[0].Endpoints = append(twice.Spec.Ports[0].Endpoints, twice.Spec.Ports[0].Endpoints[0])
	_, err = imps.Create(ctx, twice, metav1.CreateOptions{})
	require.NoError(t, err)

	r, err = checker.Check(ctx)
	require.NoError(t, err)
	t.Logf("%s", r)
	has := func(items []string, s string) bool {
		for _, i := range items {
			if strings.Contains(i, s) {
				return true
			}
		}
		return false
	}
	assert.True(t, has(r.Stale, "cluster-2: serviceimports chaos/nobody-exports-this"), "stale: %v", r.Stale)
	assert.True(t, has(r.Lost, "cluster-2: serviceimports chaos/svc-lost"), "lost: %v", r.Lost)
	assert.True(t, has(r.Duplicated, "cluster-2: serviceimports chaos/svc-twice: port 8080 lists default/default/default/cluster-1 twice"), "duplicated: %v", r.Duplicated)
	assert.True(t, has(r.Differ, "cluster-2: serviceimports chaos/svc-twice: spec"), "differ: %v", r.Differ)
	assert.False(t, has(r.Lost, "control-plane") || has(r.Stale, "control-plane") || has(r.Differ, "control-plane"),
		"the control plane holds the truth: %s", r)

	// A member left out of the truth (withdrawn) serves nothing: the
	// control plane, which still serves its endpoints, is then wrong.
	r, err = (&invariant.Checker{ControlPlane: checker.ControlPlane, Members: checker.Members, IngressClass: IngressClass,
		Withdrawn: []string{m1.Name}, WithoutSyncer: true}).Check(ctx)
	require.NoError(t, err)
	assert.True(t, has(r.Stale, "control-plane: serviceimports chaos/svc-lost"), "stale: %v", r.Stale)
}
