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

// This file is the pure half of the syncer: given what the control plane
// says and what a member holds, it computes what the member should hold.
// It knows no clients, so every rule of the federation's shape is tested
// here with tables; the reconcilers only fetch inputs and apply outputs.

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
)

const (
	// FieldManager is the server-side apply field manager of every write.
	FieldManager = "fedmesh-syncer"
	// ManagedByLabel marks the objects the syncer created in a member; it
	// updates and deletes only objects that carry it with ManagedByValue.
	// In a member joined by "kubectl fedmesh join", only fedmesh's
	// identity may set it (memberrbac.AdmissionPolicies).
	ManagedByLabel = memberrbac.ManagedByLabel
	ManagedByValue = memberrbac.ManagedByValue
	// ExportLabel, on an Ingress the syncer created, names the
	// ServiceExport (of the Ingress's namespace) it exposes.
	ExportLabel = "flomesh.io/export"
	// Annotations of the pipy ingress controller (the default class) that
	// carry an export's gateway settings: its load balancer, session
	// stickiness and path rewrite.
	AnnotationLoadBalancer  = "pipy.ingress.kubernetes.io/lb-type"
	AnnotationSessionSticky = "pipy.ingress.kubernetes.io/session-sticky"
	AnnotationRewriteFrom   = "pipy.ingress.kubernetes.io/rewrite-target-from"
	AnnotationRewriteTo     = "pipy.ingress.kubernetes.io/rewrite-target-to"
	// IngressPrefix starts the name of every Ingress the syncer creates,
	// so that it does not take the name a user would give the Ingress of
	// their own Service.
	IngressPrefix = memberrbac.IngressPrefix
)

// Owned reports whether the syncer created obj.
func Owned(obj metav1.Object) bool {
	return obj != nil && obj.GetLabels()[ManagedByLabel] == ManagedByValue
}

// ownedLabels are the labels of an object the syncer creates.
func ownedLabels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue}
}

// DesiredImport returns the ServiceImport the member of key memberKey
// should hold for the control-plane import imp: imp with only the
// endpoints of the other clusters whose exports reach the member, as the
// import's status says each export's audience (targetClusters, empty for
// every cluster). Ports left without endpoints are dropped, and so is the
// import when no port remains, as when the member is the only exporter.
//
// The control-plane import is all it reads: what a member exports, and to
// whom, reaches the syncer through fedmesh-apiserver, never from the
// exporting member's own objects.
func DesiredImport(memberKey string, imp *v1alpha1.ServiceImport) *v1alpha1.ServiceImport {
	if imp == nil {
		return nil
	}
	audience := imports.Audiences(imp)
	var ports []v1alpha1.ServicePort
	for _, p := range imp.Spec.Ports {
		p := *p.DeepCopy()
		if p.Endpoints = imports.VisibleTo(memberKey, audience, p.Endpoints); len(p.Endpoints) == 0 {
			continue
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil
	}
	spec := *imp.Spec.DeepCopy()
	spec.Ports = ports
	return &v1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: imp.Namespace, Name: imp.Name, Labels: ownedLabels()},
		Spec:       spec,
	}
}

// DesiredPolicy returns the GlobalTrafficPolicy a member should hold given
// the control-plane policy gtp: a copy of its spec when the member imports
// or hosts the service (consumers there route by it), else nil.
func DesiredPolicy(gtp *v1alpha1.GlobalTrafficPolicy, imports, hosts bool) *v1alpha1.GlobalTrafficPolicy {
	if gtp == nil || (!imports && !hosts) {
		return nil
	}
	return &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: gtp.Namespace, Name: gtp.Name, Labels: ownedLabels()},
		Spec:       *gtp.Spec.DeepCopy(),
	}
}

// ingressAnnotationKeys are the annotations the syncer owns on its
// Ingresses.
var ingressAnnotationKeys = []string{AnnotationLoadBalancer, AnnotationSessionSticky, AnnotationRewriteFrom, AnnotationRewriteTo}

// ingressAnnotations returns the annotations that tell the gateway how to
// serve the export: always its load balancer (the API's default when
// unset), stickiness when it asks for it, and the path rewrite when it
// gives both ends of one (the gateway ignores half a rewrite).
func ingressAnnotations(export *v1alpha1.ServiceExport) map[string]string {
	lb := export.Spec.LoadBalancer
	if lb == "" {
		lb = v1alpha1.RoundRobinLoadBalancer
	}
	a := map[string]string{AnnotationLoadBalancer: string(lb)}
	if export.Spec.SessionSticky {
		a[AnnotationSessionSticky] = "true"
	}
	if r := export.Spec.PathRewrite; r != nil && r.From != "" && r.To != "" {
		a[AnnotationRewriteFrom], a[AnnotationRewriteTo] = r.From, r.To
	}
	return a
}

// IngressName is the name of the Ingress that exposes the export name.
func IngressName(export string) string { return IngressPrefix + export }

// PathsConflict is the syncer's judgement of whether an export's paths are
// free at the member's gateway, whatever the export's validity: it returns
// "" when they are, else a message naming what holds them, which becomes
// the export's PathsAvailable=False, reason IngressConflict (and, through
// the control plane, its Valid=False).
//
// others are the member's Ingresses; those the syncer did not create, of
// the class the syncer writes (class; "" for none) or of none, hold the
// paths they serve for every host, and the name of the export's Ingress.
// rivals are the member's other exports that claim a path of this one and
// that the control plane found valid; of two fedmesh exports, the older
// one (by creation time, then namespace and name) holds the path, as
// KEP-1645 resolves conflicts. Age is a strict order, so the judgement of
// an export depends only on older exports and never on itself.
func PathsConflict(export *v1alpha1.ServiceExport, class string, others []*networkingv1.Ingress, rivals []*v1alpha1.ServiceExport) string {
	if export == nil {
		return ""
	}
	paths := exportPaths(export)
	name := IngressName(export.Name)
	var ingClass *string
	if class != "" {
		ingClass = &class
	}
	var conflicts []string
	for _, r := range rivals {
		if r.UID == export.UID || !older(r, export) {
			continue
		}
		for _, p := range paths {
			if claims(r, p) {
				conflicts = append(conflicts, fmt.Sprintf("path %s is held by the older ServiceExport %s/%s", p, r.Namespace, r.Name))
			}
		}
	}
	for _, o := range others {
		if Owned(o) {
			continue
		}
		ref := o.Namespace + "/" + o.Name
		if o.Namespace == export.Namespace && o.Name == name {
			conflicts = append(conflicts, fmt.Sprintf("Ingress %s exists and is not managed by fedmesh", ref))
			continue
		}
		if !sameClass(o.Spec.IngressClassName, ingClass) {
			continue
		}
		for _, p := range paths {
			if servesPath(o, p) {
				conflicts = append(conflicts, fmt.Sprintf("path %s is already used by Ingress %s", p, ref))
			}
		}
	}
	sort.Strings(conflicts)
	return strings.Join(conflicts, "; ")
}

// exportPaths returns the distinct paths of an export's rules.
func exportPaths(export *v1alpha1.ServiceExport) []string {
	var paths []string
	for _, r := range export.Spec.Rules {
		if r.Path != "" && !slices.Contains(paths, r.Path) {
			paths = append(paths, r.Path)
		}
	}
	return paths
}

// DesiredIngress returns the Ingress that exposes an export at its rules'
// paths on the member's gateway, of ingress class class (none when class
// is empty), or nil when the export must not be exposed: when there is
// none, when the control plane did not find it valid, or when its paths
// are not free (pathsConflict, from PathsConflict, is not empty; the
// syncer's judgement may be fresher than the control plane's).
//
// A rule without a path is invalid (the control plane says so): it would
// make the export a catch-all of the gateway, so no such export is ever
// exposed.
func DesiredIngress(export *v1alpha1.ServiceExport, valid bool, pathsConflict string, class string) *networkingv1.Ingress {
	if export == nil || !valid || pathsConflict != "" || len(export.Spec.Rules) == 0 {
		return nil
	}
	for _, r := range export.Spec.Rules {
		if r.Path == "" {
			return nil
		}
	}
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   export.Namespace,
			Name:        IngressName(export.Name),
			Labels:      map[string]string{ManagedByLabel: ManagedByValue, ExportLabel: export.Name},
			Annotations: ingressAnnotations(export),
		},
	}
	if class != "" {
		ing.Spec.IngressClassName = &class
	}
	var paths []networkingv1.HTTPIngressPath
	for _, r := range export.Spec.Rules {
		pathType := networkingv1.PathType(r.PathType)
		if pathType == "" {
			pathType = networkingv1.PathTypePrefix
		}
		if slices.ContainsFunc(paths, func(p networkingv1.HTTPIngressPath) bool { return p.Path == r.Path && *p.PathType == pathType }) {
			continue
		}
		paths = append(paths, networkingv1.HTTPIngressPath{
			Path:     r.Path,
			PathType: &pathType,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: export.Name,
				Port: networkingv1.ServiceBackendPort{Number: r.PortNumber},
			}},
		})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}}
	return ing
}

// older reports whether export a precedes b: created first, ties broken by
// namespace and name, so that every replica of the syncer agrees.
func older(a, b *v1alpha1.ServiceExport) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// claims reports whether an export has a rule of path.
func claims(e *v1alpha1.ServiceExport, path string) bool {
	for _, r := range e.Spec.Rules {
		if r.Path == path {
			return true
		}
	}
	return false
}

// sameClass reports whether two Ingresses may be served by the same
// controller. An Ingress without a class goes to the default class, which
// may be ours, so it counts as the same.
func sameClass(a, b *string) bool {
	return a == nil || b == nil || *a == *b
}

// servesPath reports whether an Ingress routes path for every host, as the
// gateway is reached by address, without a host name.
func servesPath(ing *networkingv1.Ingress, path string) bool {
	for _, r := range ing.Spec.Rules {
		if r.Host != "" || r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.Path == path {
				return true
			}
		}
	}
	return false
}

// Valid reports whether the control plane found the export valid, in the
// conditions it computed for it.
func Valid(cp []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(cp, imports.ConditionValid)
}

// DesiredExportConditions returns the conditions the syncer writes onto a
// member's export: the Valid and Conflict conditions the control plane
// computed (cp, from the import's status.exports), as they are, and the
// syncer's own PathsAvailable, from pathsConflict (PathsConflict's
// judgement), of the export's generation, created at created. Valid and
// Conflict are left out while the control plane has not judged the
// export, so that a new export is not marked before it has been; nothing
// is returned then unless the paths are taken, which the control plane
// must learn: an export whose paths are free needs no write to say so.
func DesiredExportConditions(cp []metav1.Condition, pathsConflict string, generation int64, created metav1.Time) []metav1.Condition {
	conds := judged(cp)
	if len(conds) == 0 && pathsConflict == "" {
		return nil
	}
	paths := metav1.Condition{Type: imports.ConditionPathsAvailable, Status: metav1.ConditionTrue,
		Reason: imports.ReasonPathsAvailable, Message: "the export's paths are free at the cluster's gateway",
		ObservedGeneration: generation, LastTransitionTime: created}
	if pathsConflict != "" {
		paths.Status, paths.Reason, paths.Message = metav1.ConditionFalse, imports.ReasonIngressConflict, pathsConflict
	}
	return append(conds, paths)
}

// judged returns the Valid and Conflict conditions of conds: the control
// plane's judgement of an export.
func judged(conds []metav1.Condition) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(conds)+1)
	for _, c := range conds {
		if c.Type == imports.ConditionValid || c.Type == imports.ConditionConflict {
			out = append(out, c)
		}
	}
	return out
}

// MergeConditions returns the conditions to write given the live ones and
// the desired ones, and whether they differ from live in anything but
// their transition times. A condition whose status did not change keeps
// its live transition time; one that changed gets now; one that is new
// keeps the desired one (the control plane's: the export's creation).
func MergeConditions(live, desired []metav1.Condition, now time.Time) ([]metav1.Condition, bool) {
	out := make([]metav1.Condition, 0, len(desired))
	changed := false
	for _, d := range desired {
		l := meta.FindStatusCondition(live, d.Type)
		switch {
		case l == nil:
			changed = true
		case l.Status != d.Status:
			changed = true
			d.LastTransitionTime = metav1.NewTime(now)
		default:
			d.LastTransitionTime = l.LastTransitionTime
			if l.Reason != d.Reason || l.Message != d.Message || l.ObservedGeneration != d.ObservedGeneration {
				changed = true
			}
		}
		out = append(out, d)
	}
	return out, changed
}

// ImportUpToDate reports whether the live ServiceImport of a member holds
// the desired one: it carries the syncer's labels and the same spec once
// the member's defaults are applied.
func ImportUpToDate(desired, live *v1alpha1.ServiceImport) bool {
	d := desired.DeepCopy()
	v1alpha1.SetObjectDefaults_ServiceImport(d)
	return hasLabels(live.Labels, d.Labels) && jsonEqual(d.Spec, live.Spec)
}

// PolicyUpToDate is ImportUpToDate for GlobalTrafficPolicies.
func PolicyUpToDate(desired, live *v1alpha1.GlobalTrafficPolicy) bool {
	d := desired.DeepCopy()
	v1alpha1.SetObjectDefaults_GlobalTrafficPolicy(d)
	return hasLabels(live.Labels, d.Labels) && jsonEqual(d.Spec, live.Spec)
}

// IngressUpToDate is ImportUpToDate for Ingresses, which have no defaults.
func IngressUpToDate(desired, live *networkingv1.Ingress) bool {
	for _, k := range ingressAnnotationKeys {
		// An annotation the export no longer asks for must go too.
		if desired.Annotations[k] != live.Annotations[k] {
			return false
		}
	}
	return hasLabels(live.Labels, desired.Labels) && jsonEqual(desired.Spec, live.Spec)
}

func hasLabels(live, want map[string]string) bool {
	for k, v := range want {
		if live[k] != v {
			return false
		}
	}
	return true
}

// jsonEqual compares two values as they serialize, so that a nil and an
// empty optional list, which the member cannot tell apart, are equal.
func jsonEqual(a, b interface{}) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
