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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/test/framework"
)

// TestPluginEscapesWhatAMemberWrites has a member's administrator write a
// terminal escape sequence into the message of a ServiceExport condition,
// which the control plane repeats in its ServiceImport: "kubectl fedmesh
// status service" shows the message, with the sequence made visible, not
// obeyed.
func TestPluginEscapesWhatAMemberWrites(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m1 := f.Member("cluster-1")
	register(t, ctx, f, "cluster-1", 81)
	deployHTTPBin(t, ctx, m1)

	// A PathsAvailable=False the member reports for the export's current
	// generation is repeated on the control plane, as Valid=False, as it
	// is worded.
	const hostile = "served by \x1b]0;pwned\x07another Ingress\x1b[2J"
	exports := m1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin")
	e, err := exports.Get(ctx, "httpbin", metav1.GetOptions{})
	require.NoError(t, err)
	meta.SetStatusCondition(&e.Status.Conditions, metav1.Condition{
		Type: "PathsAvailable", Status: metav1.ConditionFalse, Reason: "IngressConflict",
		Message: hostile, ObservedGeneration: e.Generation,
	})
	_, err = exports.UpdateStatus(ctx, e, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		si, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		if assert.NoError(c, err) && assert.Len(c, si.Status.Exports, 1) {
			valid := meta.FindStatusCondition(si.Status.Exports[0].Conditions, "Valid")
			if assert.NotNil(c, valid) {
				assert.Equal(c, hostile, valid.Message, "the control plane holds the sequence raw")
			}
		}
	}, 20*time.Second, 200*time.Millisecond)

	out := newPlugin(t, f).run(t, "status", "service", "httpbin/httpbin")
	assert.NotContains(t, out, "\x1b", "no ESC reaches the terminal")
	assert.Contains(t, out, "False (IngressConflict: served by ^[]0;pwned\aanother Ingress^[[2J)")
	assert.Regexp(t, `(?m)^default/default/default/cluster-1\s+no\s+<none>\s+False \(IngressConflict: [^\n]*\)\s+\S+\n`, out, "one row for the export")
}
