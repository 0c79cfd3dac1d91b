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

package validation

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/artifacts/crds"
)

// rules returns n rules exposing ports 1..n, each at its own path.
func rules(n int) []flomesh.ServiceExportRule {
	rules := make([]flomesh.ServiceExportRule, n)
	for i := range rules {
		rules[i] = flomesh.ServiceExportRule{PortNumber: int32(i + 1), Path: fmt.Sprintf("/p%d", i+1), PathType: flomesh.PathTypePrefix}
	}
	return rules
}

// targetClusters returns n distinct well-formed cluster keys.
func targetClusters(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("default/default/default/cluster-%d", i)
	}
	return keys
}

// pathOf returns an absolute path of n characters: "/" and n-1 times char.
func pathOf(n int, char string) string {
	return "/" + strings.Repeat(char, n-1)
}

// longestKey is a well-formed cluster key of MaxClusterKeyLength.
var longestKey = strings.Repeat(strings.Repeat("a", 63)+"/", 3) + strings.Repeat("a", 63)

// TestValidateServiceExportLimits checks each limit of a ServiceExport at
// the boundary and one over.
func TestValidateServiceExportLimits(t *testing.T) {
	require.Len(t, longestKey, MaxClusterKeyLength)
	tests := []struct {
		name   string
		mutate func(*flomesh.ServiceExport)
		want   []want
	}{
		{name: "rules at the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules = rules(MaxExportRules) }},
		{name: "rules over the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules = rules(MaxExportRules + 1) },
			want: errs(want{field.ErrorTypeTooMany, "spec.rules"})},
		{name: "path at the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = pathOf(MaxPathLength, "a") }},
		{name: "path over the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = pathOf(MaxPathLength+1, "a") },
			want: errs(want{field.ErrorTypeTooLong, "spec.rules[0].path"})},
		// A CRD's maxLength counts characters, not bytes; so does the
		// validation, or the two would disagree on paths that are not ASCII.
		{name: "multibyte path at the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = pathOf(MaxPathLength, "é") }},
		{name: "multibyte path over the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = pathOf(MaxPathLength+1, "é") },
			want: errs(want{field.ErrorTypeTooLong, "spec.rules[0].path"})},
		{name: "huge path", mutate: func(e *flomesh.ServiceExport) { e.Spec.Rules[0].Path = pathOf(1<<20, "a") },
			want: errs(want{field.ErrorTypeTooLong, "spec.rules[0].path"})},
		{name: "pathRewrite at the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.PathRewrite = &flomesh.PathRewrite{From: pathOf(MaxPathLength, "a"), To: pathOf(MaxPathLength, "b")}
		}},
		{name: "pathRewrite over the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.PathRewrite = &flomesh.PathRewrite{From: pathOf(MaxPathLength+1, "a"), To: pathOf(MaxPathLength+1, "b")}
		}, want: errs(want{field.ErrorTypeTooLong, "spec.pathRewrite.from"}, want{field.ErrorTypeTooLong, "spec.pathRewrite.to"})},
		{name: "serviceAccountName at the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.ServiceAccountName = strings.Repeat("a", MaxServiceAccountNameLength)
		}},
		{name: "serviceAccountName over the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.ServiceAccountName = strings.Repeat("a", MaxServiceAccountNameLength+1)
		}, want: errs(want{field.ErrorTypeTooLong, "spec.serviceAccountName"})},
		{name: "targetClusters at the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.TargetClusters = targetClusters(MaxTargetClusters) }},
		{name: "targetClusters over the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.TargetClusters = targetClusters(MaxTargetClusters + 1)
		}, want: errs(want{field.ErrorTypeTooMany, "spec.targetClusters"})},
		{name: "target key at the limit", mutate: func(e *flomesh.ServiceExport) { e.Spec.TargetClusters = []string{longestKey} }},
		{name: "target key over the limit", mutate: func(e *flomesh.ServiceExport) {
			e.Spec.TargetClusters = []string{"default/default/default/cluster-2", longestKey + "a"}
		}, want: errs(want{field.ErrorTypeTooLong, "spec.targetClusters[1]"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validExport()
			tc.mutate(e)
			assertErrors(t, tc.want, ValidateServiceExport(e))
		})
	}
}

// TestValidateServiceExportDoesNotWalkHugeLists checks that a list over its
// limit is reported once, as too many, and its items are not judged: an
// export of 20,000 broken rules costs what one over the limit does.
func TestValidateServiceExportDoesNotWalkHugeLists(t *testing.T) {
	e := validExport()
	e.Spec.Rules = make([]flomesh.ServiceExportRule, 20000)      // no port, no path
	e.Spec.TargetClusters = make([]string, 20000)                // no key
	e.Spec.ServiceAccountName = strings.Repeat("a", 1<<20) + "é" // measured, not counted
	list := ValidateServiceExport(e)
	assertErrors(t, errs(
		want{field.ErrorTypeTooMany, "spec.rules"},
		want{field.ErrorTypeTooMany, "spec.targetClusters"},
		want{field.ErrorTypeTooLong, "spec.serviceAccountName"},
	), list)
	for _, err := range list {
		assert.Less(t, len(err.Error()), 200, "the error quotes no value: %.300s", err.Error())
	}
}

// TestServiceExportCRDLimits checks that the member CRD generated from the
// v1alpha1 markers carries the limits ValidateServiceExport enforces, so
// that a member's API server and fedmesh-apiserver refuse the same exports.
// It also checks that every string and list of the spec is bounded, so that
// a field added without a limit fails here.
func TestServiceExportCRDLimits(t *testing.T) {
	data, err := crds.FS.ReadFile("flomesh.io_serviceexports.yaml")
	require.NoError(t, err)
	var crd map[string]any
	require.NoError(t, yaml.Unmarshal(data, &crd))
	versions := get[[]any](t, crd, "spec", "versions")
	require.Len(t, versions, 1)
	spec := get[map[string]any](t, versions[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "spec")

	limits := []struct {
		path []string
		want int
	}{
		{[]string{"properties", "serviceAccountName", "maxLength"}, MaxServiceAccountNameLength},
		{[]string{"properties", "rules", "maxItems"}, MaxExportRules},
		{[]string{"properties", "rules", "items", "properties", "path", "maxLength"}, MaxPathLength},
		{[]string{"properties", "rules", "items", "properties", "path", "minLength"}, 1},
		{[]string{"properties", "pathRewrite", "properties", "from", "maxLength"}, MaxPathLength},
		{[]string{"properties", "pathRewrite", "properties", "from", "minLength"}, 1},
		{[]string{"properties", "pathRewrite", "properties", "to", "maxLength"}, MaxPathLength},
		{[]string{"properties", "targetClusters", "maxItems"}, MaxTargetClusters},
		{[]string{"properties", "targetClusters", "items", "maxLength"}, MaxClusterKeyLength},
	}
	for _, l := range limits {
		assert.EqualValues(t, l.want, get[float64](t, spec, l.path...), strings.Join(l.path, "."))
	}
	assert.Contains(t, get[[]any](t, spec, "properties", "rules", "items", "required"), "path", "a rule without a path is refused")
	assert.Contains(t, get[[]any](t, spec, "properties", "pathRewrite", "required"), "from", "a rewrite without from is refused")
	assert.Equal(t, []any{map[string]any{"rule": "self.startsWith('/')", "message": `must be an absolute path (start with "/")`}},
		get[[]any](t, spec, "properties", "rules", "items", "properties", "path", "x-kubernetes-validations"))
	rulesValidations := get[[]any](t, spec, "properties", "rules", "x-kubernetes-validations")
	require.Len(t, rulesValidations, 1)
	assert.Contains(t, rulesValidations[0].(map[string]any)["rule"], "s.path == r.path", "one port at one path only")

	// Every string has a maxLength or an enum, every list a maxItems.
	var walk func(path string, schema map[string]any)
	walk = func(path string, schema map[string]any) {
		switch schema["type"] {
		case "string":
			_, hasMax := schema["maxLength"]
			_, hasEnum := schema["enum"]
			assert.True(t, hasMax || hasEnum, "%s: a string without maxLength", path)
		case "array":
			assert.Contains(t, schema, "maxItems", "%s: a list without maxItems", path)
			walk(path+"[]", schema["items"].(map[string]any))
		case "object":
			props, _ := schema["properties"].(map[string]any)
			for name, p := range props {
				walk(path+"."+name, p.(map[string]any))
			}
		}
	}
	walk("spec", spec)
}

// TestGlobalTrafficPolicyCRDLimits checks that the members' CRD of
// policies bounds the targets, the grace and the reported routes as
// fedmesh-apiserver does.
func TestGlobalTrafficPolicyCRDLimits(t *testing.T) {
	data, err := crds.FS.ReadFile("flomesh.io_globaltrafficpolicies.yaml")
	require.NoError(t, err)
	var crd map[string]any
	require.NoError(t, yaml.Unmarshal(data, &crd))
	versions := get[[]any](t, crd, "spec", "versions")
	require.Len(t, versions, 1)
	spec := get[map[string]any](t, versions[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "spec")
	assert.EqualValues(t, MaxPolicyTargets, get[float64](t, spec, "properties", "targets", "maxItems"))
	assert.EqualValues(t, 0, get[float64](t, spec, "properties", "unavailableGraceSeconds", "minimum"))
	assert.EqualValues(t, MaxUnavailableGraceSeconds, get[float64](t, spec, "properties", "unavailableGraceSeconds", "maximum"))

	consumers := get[map[string]any](t, versions[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "status", "properties", "consumers")
	assert.EqualValues(t, MaxConsumerRoutes, get[float64](t, consumers, "maxItems"))
	route := get[map[string]any](t, consumers, "items", "properties")
	assert.EqualValues(t, MaxRouteMessageLength, get[float64](t, route, "message", "maxLength"))
	assert.EqualValues(t, MaxRouteTiers, get[float64](t, route, "tiers", "maxItems"))
	assert.EqualValues(t, MaxReportedMembers, get[float64](t, route, "tiers", "items", "properties", "destinations", "maxItems"))
}

// get returns the value at path in a decoded YAML document.
func get[T any](t *testing.T, doc map[string]any, path ...string) T {
	t.Helper()
	var v any = doc
	for _, p := range path {
		m, ok := v.(map[string]any)
		require.True(t, ok, "%s: not an object", p)
		v, ok = m[p]
		require.True(t, ok, "%s: missing", strings.Join(path, "."))
	}
	out, ok := v.(T)
	require.True(t, ok, "%s: %T", strings.Join(path, "."), v)
	return out
}
