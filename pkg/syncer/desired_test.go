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
	"time"

	"github.com/stretchr/testify/assert"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

const (
	k1 = "default/default/default/cluster-1"
	k2 = "default/default/default/cluster-2"
	k3 = "default/default/default/cluster-3"
)

func endpoint(key string, port int32, path string) v1alpha1.Endpoint {
	return v1alpha1.Endpoint{ClusterKey: key, Target: v1alpha1.Target{Host: "127.0.0.1", IP: "127.0.0.1", Port: port, Path: path}}
}

var (
	e1 = endpoint(k1, 81, "/cluster-1/httpbin-mesh")
	e3 = endpoint(k3, 83, "/cluster-3/httpbin-mesh")
)

// seedImport is the control plane's httpbin import of the seed.
func seedImport(ports ...v1alpha1.ServicePort) *v1alpha1.ServiceImport {
	if ports == nil {
		ports = []v1alpha1.ServicePort{{Name: "pipy", Protocol: "TCP", Port: 8080, Endpoints: []v1alpha1.Endpoint{e1, e3}}}
	}
	return &v1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", ResourceVersion: "7", UID: "u"},
		Spec:       v1alpha1.ServiceImportSpec{Type: v1alpha1.ClusterSetIP, ServiceAccountName: "*", Ports: ports},
		Status:     v1alpha1.ServiceImportStatus{Clusters: []v1alpha1.SourceStatus{{Cluster: k1}, {Cluster: k3}}},
	}
}

// memberImport is what a member holds: the syncer's labels and a spec.
func memberImport(ports ...v1alpha1.ServicePort) *v1alpha1.ServiceImport {
	return &v1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", Labels: ownedLabels()},
		Spec:       v1alpha1.ServiceImportSpec{Type: v1alpha1.ClusterSetIP, ServiceAccountName: "*", Ports: ports},
	}
}

func port(number int32, endpoints ...v1alpha1.Endpoint) v1alpha1.ServicePort {
	return v1alpha1.ServicePort{Name: "pipy", Protocol: "TCP", Port: number, Endpoints: endpoints}
}

// withAudience sets, in the import's status, whom each cluster's export
// goes to: audiences maps a cluster key to its export's targetClusters.
func withAudience(imp *v1alpha1.ServiceImport, audiences map[string][]string) *v1alpha1.ServiceImport {
	for _, key := range []string{k1, k3} {
		imp.Status.Exports = append(imp.Status.Exports, v1alpha1.ExportStatus{Cluster: key, TargetClusters: audiences[key]})
	}
	return imp
}

func TestDesiredImport(t *testing.T) {
	tests := []struct {
		name   string
		member string
		imp    *v1alpha1.ServiceImport
		want   *v1alpha1.ServiceImport
	}{{
		name: "no import on the control plane", member: k2,
	}, {
		name: "an importer gets every exporter's endpoint", member: k2, imp: seedImport(),
		want: memberImport(port(8080, e1, e3)),
	}, {
		name: "an exporter never imports its own endpoint", member: k1, imp: seedImport(),
		want: memberImport(port(8080, e3)),
	}, {
		name: "the only exporter imports nothing", member: k1,
		imp: seedImport(port(8080, e1)),
	}, {
		name: "a port served only by the member itself is dropped", member: k1,
		imp:  seedImport(port(8080, e1, e3), port(9090, endpoint(k1, 81, "/metrics"))),
		want: memberImport(port(8080, e3)),
	}, {
		name: "targetClusters that name the member", member: k2,
		imp:  withAudience(seedImport(), map[string][]string{k1: {k2}, k3: {k1}}),
		want: memberImport(port(8080, e1)),
	}, {
		name: "targetClusters that exclude the member from every export", member: k2,
		imp: withAudience(seedImport(), map[string][]string{k1: {k3}, k3: {k1}}),
	}, {
		name: "empty targetClusters are every cluster", member: k2,
		imp:  withAudience(seedImport(), map[string][]string{k1: {k2}}),
		want: memberImport(port(8080, e1, e3)),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DesiredImport(tt.member, tt.imp)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("the control plane's import is not changed", func(t *testing.T) {
		imp := withAudience(seedImport(), map[string][]string{k3: {k2}})
		DesiredImport(k1, imp)
		assert.Equal(t, withAudience(seedImport(), map[string][]string{k3: {k2}}), imp)
	})
}

func TestDesiredPolicy(t *testing.T) {
	gtp := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", ResourceVersion: "3"},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: k1}, {ClusterKey: k3}}},
		Status:     v1alpha1.GlobalTrafficPolicyStatus{Targets: []v1alpha1.TargetStatus{{ClusterKey: k1, Known: true}}},
	}
	want := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", Labels: ownedLabels()},
		Spec:       gtp.Spec,
	}
	tests := []struct {
		name           string
		gtp            *v1alpha1.GlobalTrafficPolicy
		imports, hosts bool
		want           *v1alpha1.GlobalTrafficPolicy
	}{
		{name: "no policy", imports: true, hosts: true},
		{name: "neither imports nor hosts the service", gtp: gtp},
		{name: "imports the service", gtp: gtp, imports: true, want: want},
		{name: "hosts the service", gtp: gtp, hosts: true, want: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, DesiredPolicy(tt.gtp, tt.imports, tt.hosts))
		})
	}
}

func seedExport(rules ...v1alpha1.ServiceExportRule) *v1alpha1.ServiceExport {
	if rules == nil {
		rules = []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/cluster-1/httpbin-mesh", PathType: v1alpha1.PathTypePrefix}}
	}
	return &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", UID: "httpbin/httpbin", CreationTimestamp: metav1.NewTime(seedCreated)},
		Spec:       v1alpha1.ServiceExportSpec{ServiceAccountName: "*", Rules: rules},
	}
}

func ingress(namespace, name string, class *string, host string, labels map[string]string, paths ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels}}
	ing.Spec.IngressClassName = class
	var ps []networkingv1.HTTPIngressPath
	for _, p := range paths {
		ps = append(ps, networkingv1.HTTPIngressPath{
			Path: p, PathType: ptr.To(networkingv1.PathTypePrefix),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "httpbin", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
		})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: ps}}}}
	return ing
}

// rival is an export of namespace/name created age after the seed's export
// (before it when age is negative), with rules of paths.
func rival(namespace, name string, age time.Duration, paths ...string) *v1alpha1.ServiceExport {
	e := seedExport()
	e.Namespace, e.Name, e.UID = namespace, name, types.UID(namespace+"/"+name)
	e.CreationTimestamp = metav1.NewTime(seedCreated.Add(age))
	e.Spec.Rules = nil
	for _, p := range paths {
		e.Spec.Rules = append(e.Spec.Rules, v1alpha1.ServiceExportRule{PortNumber: 8080, Path: p})
	}
	return e
}

var seedCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestDesiredIngress(t *testing.T) {
	exportLabels := map[string]string{ManagedByLabel: ManagedByValue, ExportLabel: "httpbin"}
	annotated := func(ing *networkingv1.Ingress, kv ...string) *networkingv1.Ingress {
		ing.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			ing.Annotations[kv[i]] = kv[i+1]
		}
		return ing
	}
	roundRobin := []string{AnnotationLoadBalancer, "RoundRobinLoadBalancer"}
	seedIngress := annotated(ingress("httpbin", "fedmesh-httpbin", ptr.To("pipy"), "", exportLabels, "/cluster-1/httpbin-mesh"), roundRobin...)
	withGateway := seedExport()
	withGateway.Spec.LoadBalancer = v1alpha1.HashingLoadBalancer
	withGateway.Spec.SessionSticky = true
	withGateway.Spec.PathRewrite = &v1alpha1.PathRewrite{From: "^/cluster-1/httpbin-mesh/?", To: "/"}
	halfRewrite := seedExport()
	halfRewrite.Spec.PathRewrite = &v1alpha1.PathRewrite{From: "^/cluster-1/httpbin-mesh/?"}
	tests := []struct {
		name         string
		export       *v1alpha1.ServiceExport
		invalid      bool
		class        string
		others       []*networkingv1.Ingress
		rivals       []*v1alpha1.ServiceExport
		want         *networkingv1.Ingress
		wantConflict string
	}{{
		name: "no export", class: "pipy",
	}, {
		name: "an invalid export is not exposed", export: seedExport(), invalid: true, class: "pipy",
	}, {
		// The judgement of the paths depends on nothing the control plane
		// says of the export, so that each condition has one source.
		name: "the paths of an invalid export are judged too", export: seedExport(), invalid: true, class: "pipy",
		others:       []*networkingv1.Ingress{ingress("default", "mine", ptr.To("pipy"), "", nil, "/cluster-1/httpbin-mesh")},
		wantConflict: "path /cluster-1/httpbin-mesh is already used by Ingress default/mine",
	}, {
		name: "the seed's export", export: seedExport(), class: "pipy", want: seedIngress,
	}, {
		name: "no class", export: seedExport(),
		want: annotated(ingress("httpbin", "fedmesh-httpbin", nil, "", exportLabels, "/cluster-1/httpbin-mesh"), roundRobin...),
	}, {
		name: "the export's load balancer, stickiness and rewrite", export: withGateway, class: "pipy",
		want: annotated(ingress("httpbin", "fedmesh-httpbin", ptr.To("pipy"), "", exportLabels, "/cluster-1/httpbin-mesh"),
			AnnotationLoadBalancer, "HashingLoadBalancer", AnnotationSessionSticky, "true",
			AnnotationRewriteFrom, "^/cluster-1/httpbin-mesh/?", AnnotationRewriteTo, "/"),
	}, {
		name: "half a rewrite is none", export: halfRewrite, class: "pipy", want: seedIngress,
	}, {
		name: "a repeated rule is one path",
		export: seedExport(
			v1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/"},
			v1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/", PathType: v1alpha1.PathTypePrefix},
		),
		class: "pipy",
		want:  annotated(ingress("httpbin", "fedmesh-httpbin", ptr.To("pipy"), "", exportLabels, "/"), roundRobin...),
	}, {
		name: "a rule without a path is never a catch-all", class: "pipy",
		export: seedExport(
			v1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/a"},
			v1alpha1.ServiceExportRule{PortNumber: 8080},
		),
	}, {
		name: "an older fedmesh export holds the path", export: seedExport(), class: "pipy",
		rivals:       []*v1alpha1.ServiceExport{rival("other", "web", -time.Hour, "/cluster-1/httpbin-mesh")},
		wantConflict: "path /cluster-1/httpbin-mesh is held by the older ServiceExport other/web",
	}, {
		name: "a younger fedmesh export does not", export: seedExport(), class: "pipy",
		rivals: []*v1alpha1.ServiceExport{rival("other", "web", time.Hour, "/cluster-1/httpbin-mesh")},
		want:   seedIngress,
	}, {
		name: "of two created in the same second, the first by namespace holds the path", export: seedExport(), class: "pipy",
		rivals: []*v1alpha1.ServiceExport{
			rival("zzz", "web", 0, "/cluster-1/httpbin-mesh"),
			rival("aaa", "web", 0, "/cluster-1/httpbin-mesh"),
		},
		wantConflict: "path /cluster-1/httpbin-mesh is held by the older ServiceExport aaa/web",
	}, {
		name: "an older export of other paths", export: seedExport(), class: "pipy",
		rivals: []*v1alpha1.ServiceExport{rival("other", "web", -time.Hour, "/cluster-1/web")},
		want:   seedIngress,
	}, {
		name: "a path of another Ingress", export: seedExport(), class: "pipy",
		others:       []*networkingv1.Ingress{ingress("default", "mine", ptr.To("pipy"), "", nil, "/cluster-1/httpbin-mesh")},
		wantConflict: "path /cluster-1/httpbin-mesh is already used by Ingress default/mine",
	}, {
		name: "a path of another Ingress of the default class", export: seedExport(), class: "pipy",
		others:       []*networkingv1.Ingress{ingress("default", "mine", nil, "", nil, "/cluster-1/httpbin-mesh")},
		wantConflict: "path /cluster-1/httpbin-mesh is already used by Ingress default/mine",
	}, {
		name: "the same path for another class or host, or for the syncer's own", export: seedExport(), class: "pipy",
		others: []*networkingv1.Ingress{
			ingress("default", "nginx", ptr.To("nginx"), "", nil, "/cluster-1/httpbin-mesh"),
			ingress("default", "named", ptr.To("pipy"), "example.com", nil, "/cluster-1/httpbin-mesh"),
			seedIngress,
		},
		want: seedIngress,
	}, {
		name: "the Ingress's name is taken", export: seedExport(), class: "pipy",
		others:       []*networkingv1.Ingress{ingress("httpbin", "fedmesh-httpbin", ptr.To("nginx"), "", nil, "/")},
		wantConflict: "Ingress httpbin/fedmesh-httpbin exists and is not managed by fedmesh",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conflict := PathsConflict(tt.export, tt.class, tt.others, tt.rivals)
			got := DesiredIngress(tt.export, !tt.invalid, conflict, tt.class)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantConflict, conflict)
		})
	}
}

func condition(condType string, status metav1.ConditionStatus, reason, message string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: condType, Status: status, Reason: reason, Message: message, ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(at)}
}

func TestDesiredExportConditions(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	valid := condition("Valid", metav1.ConditionTrue, "Valid", "Service httpbin/httpbin exists", created)
	invalid := condition("Valid", metav1.ConditionFalse, "ServiceNotFound", "Service httpbin/httpbin does not exist", created)
	agree := condition("Conflict", metav1.ConditionFalse, "NoConflicts", "they agree", created)
	relayed := condition("Valid", metav1.ConditionFalse, imports.ReasonIngressConflict, "path / is already used by Ingress a/b", created)
	other := condition("Exported", metav1.ConditionTrue, "Other", "another writer's", created)
	free := condition("PathsAvailable", metav1.ConditionTrue, "PathsAvailable", "the export's paths are free at the cluster's gateway", created)
	taken := condition("PathsAvailable", metav1.ConditionFalse, imports.ReasonIngressConflict, "path / is already used by Ingress a/c", created)
	tests := []struct {
		name     string
		cp       []metav1.Condition
		conflict string
		want     []metav1.Condition
	}{
		{name: "not judged yet, paths free: nothing to write"},
		{name: "not judged yet, paths taken: the control plane must learn it", conflict: "path / is already used by Ingress a/c", want: []metav1.Condition{taken}},
		{name: "as the control plane says", cp: []metav1.Condition{valid, agree}, want: []metav1.Condition{valid, agree, free}},
		{name: "only Valid and Conflict are the control plane's", cp: []metav1.Condition{valid, other, agree}, want: []metav1.Condition{valid, agree, free}},
		{
			// Valid is the control plane's, verbatim, even when the
			// syncer's judgement is fresher: the next computation follows.
			name: "a path conflict leaves Valid to the control plane", cp: []metav1.Condition{valid, agree}, conflict: "path / is already used by Ingress a/c",
			want: []metav1.Condition{valid, agree, taken},
		},
		{name: "an invalid export", cp: []metav1.Condition{invalid, agree}, conflict: "path / is already used by Ingress a/c", want: []metav1.Condition{invalid, agree, taken}},
		{name: "a conflict the control plane relays, and that is over", cp: []metav1.Condition{relayed, agree}, want: []metav1.Condition{relayed, agree, free}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, DesiredExportConditions(tt.cp, tt.conflict, 1, metav1.NewTime(created)))
		})
	}
}

func TestMergeConditions(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	earlier := created.Add(-time.Hour)
	now := created.Add(time.Hour)
	valid := condition("Valid", metav1.ConditionTrue, "Valid", "ok", created)
	agree := condition("Conflict", metav1.ConditionFalse, "NoConflicts", "they agree", created)
	tests := []struct {
		name        string
		live        []metav1.Condition
		want        []metav1.Condition
		wantChanged bool
	}{{
		name: "new conditions keep the control plane's time", wantChanged: true,
		want: []metav1.Condition{valid, agree},
	}, {
		name: "unchanged conditions keep their live time",
		live: []metav1.Condition{condition("Valid", metav1.ConditionTrue, "Valid", "ok", earlier), condition("Conflict", metav1.ConditionFalse, "NoConflicts", "they agree", earlier)},
		want: []metav1.Condition{condition("Valid", metav1.ConditionTrue, "Valid", "ok", earlier), condition("Conflict", metav1.ConditionFalse, "NoConflicts", "they agree", earlier)},
	}, {
		name: "a new message keeps the time", wantChanged: true,
		live: []metav1.Condition{condition("Valid", metav1.ConditionTrue, "Valid", "old", earlier), agree},
		want: []metav1.Condition{condition("Valid", metav1.ConditionTrue, "Valid", "ok", earlier), agree},
	}, {
		name: "a transition happens now", wantChanged: true,
		live: []metav1.Condition{condition("Valid", metav1.ConditionFalse, "ServiceNotFound", "gone", earlier), agree},
		want: []metav1.Condition{condition("Valid", metav1.ConditionTrue, "Valid", "ok", now), agree},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := MergeConditions(tt.live, []metav1.Condition{valid, agree}, now)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantChanged, changed)
		})
	}
}

func TestUpToDate(t *testing.T) {
	desired := memberImport(port(8080, e1, e3))
	desired.Spec.Type = ""
	live := memberImport(port(8080, e1, e3))
	live.Labels["team"] = "a"
	live.ResourceVersion = "12"
	assert.True(t, ImportUpToDate(desired, live), "the member's default type and others' labels are no difference")

	moved := live.DeepCopy()
	moved.Spec.Ports[0].Endpoints[0].Target.Path = "/elsewhere"
	assert.False(t, ImportUpToDate(desired, moved))
	unlabelled := live.DeepCopy()
	unlabelled.Labels = nil
	assert.False(t, ImportUpToDate(desired, unlabelled))

	gtp := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Labels: ownedLabels()}}
	liveGTP := gtp.DeepCopy()
	liveGTP.Spec.LbType = v1alpha1.LocalityLbType
	liveGTP.Spec.Targets = []v1alpha1.TrafficTarget{}
	assert.True(t, PolicyUpToDate(gtp, liveGTP), "defaults and empty lists are no difference")
	liveGTP.Spec.LbType = v1alpha1.FailOverLbType
	assert.False(t, PolicyUpToDate(gtp, liveGTP))

	ing := ingress("httpbin", "fedmesh-httpbin", ptr.To("pipy"), "", ownedLabels(), "/a")
	assert.True(t, IngressUpToDate(ing, ing.DeepCopy()))
	assert.False(t, IngressUpToDate(ing, ingress("httpbin", "fedmesh-httpbin", ptr.To("nginx"), "", ownedLabels(), "/a")))
	sticky := ing.DeepCopy()
	sticky.Annotations = map[string]string{AnnotationSessionSticky: "true"}
	assert.False(t, IngressUpToDate(ing, sticky), "an annotation the export no longer asks for")
	assert.False(t, IngressUpToDate(sticky, ing), "an annotation the export asks for")
	other := sticky.DeepCopy()
	other.Annotations["example.com/note"] = "a user's"
	assert.True(t, IngressUpToDate(sticky, other), "annotations of others are left alone")
}
