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

// Package invariant checks that a running federation holds what it
// should: it computes, from scratch and from the members' own objects
// (their ServiceExports and Services) and the control plane's Clusters and
// GlobalTrafficPolicies, what the aggregated API and every member should
// hold, and compares that with what they do hold.
//
// The truth is computed with fedmesh's own pure functions, not re-derived:
// imports.Compute gives the control plane's ServiceImports, and the
// syncer's desired.go (DesiredImport, DesiredPolicy, PathsConflict,
// DesiredIngress, DesiredExportConditions) what each member should hold.
// So a difference the checker reports is a difference between what the
// running servers hold and what their own rules say, after whatever faults
// a test inflicted: an object lost, one left stale, one held twice, or one
// whose content differs.
//
// A check reads many objects, one list at a time, so it is a snapshot only
// when nothing changes meanwhile: tests stop their writes and then call
// Converge, which checks again until the federation holds the truth or the
// time they allow has passed.
package invariant

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/imports"
	"github.com/fedmesh/fedmesh/pkg/members"
	"github.com/fedmesh/fedmesh/pkg/syncer"
)

// Member is a member cluster as the checker reads it: with an admin's
// clients, so that it sees every object whoever wrote it.
type Member struct {
	// Name is the name of the member's Cluster on the control plane.
	Name    string
	Kube    kubernetes.Interface
	Fedmesh versioned.Interface
}

// Checker compares a federation with the truth computed from its members.
type Checker struct {
	// ControlPlane is an admin client of flomesh.io on the control plane:
	// fedmesh-apiserver through the aggregator (or one replica directly).
	ControlPlane versioned.Interface
	// Members are the members to read, one for each Cluster of the
	// control plane; a Cluster without one fails the check.
	Members []Member
	// IngressClass is fedmesh-syncer's --ingress-class ("pipy" in the
	// loopback federations).
	IngressClass string
	// Namespaces are the namespaces that federate, as fedmesh-apiserver's
	// and fedmesh-syncer's --federated-namespaces say.
	Namespaces imports.Namespaces
	// Withdrawn names the Clusters whose endpoints the truth leaves out, as
	// fedmesh does once a member has been not Ready for the grace period:
	// their exports serve nothing and nothing is checked in them. Every
	// other Cluster's member must answer.
	Withdrawn []string
	// WithoutSyncer checks the control plane only: nothing is expected in
	// the members.
	WithoutSyncer bool
	// Log, when set, receives what is still wrong every few seconds
	// while Converge waits.
	Log func(format string, args ...any)
}

// Report is what a check found. Each entry names where and what, as
// "<cluster>: <resource> <namespace>/<name>[: detail]", the control plane's
// as "control-plane: ...".
type Report struct {
	// Lost are objects (or endpoints, or conditions) the truth wants that
	// are not held.
	Lost []string
	// Stale are objects held that the truth does not want.
	Stale []string
	// Duplicated are objects or endpoints held more than once.
	Duplicated []string
	// Differ are objects held, and wanted, with other content.
	Differ []string
	// Imports is how many ServiceImports the truth holds on the control
	// plane, so that a test can tell an empty federation from a full one.
	Imports int
}

// OK reports whether the federation holds exactly the truth.
func (r *Report) OK() bool {
	return len(r.Lost)+len(r.Stale)+len(r.Duplicated)+len(r.Differ) == 0
}

// Problems is the number of differences found.
func (r *Report) Problems() int {
	return len(r.Lost) + len(r.Stale) + len(r.Duplicated) + len(r.Differ)
}

// String lists the differences, at most 20 of each kind.
func (r *Report) String() string {
	if r.OK() {
		return fmt.Sprintf("the federation holds the truth (%d imports)", r.Imports)
	}
	var b strings.Builder
	part := func(kind string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "%d %s:\n", len(items), kind)
		for i, s := range items {
			if i == 20 {
				fmt.Fprintf(&b, "  ... and %d more\n", len(items)-20)
				break
			}
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	part("lost", r.Lost)
	part("stale", r.Stale)
	part("duplicated", r.Duplicated)
	part("differ", r.Differ)
	return strings.TrimRight(b.String(), "\n")
}

func (r *Report) sort() {
	for _, s := range [][]string{r.Lost, r.Stale, r.Duplicated, r.Differ} {
		sort.Strings(s)
	}
}

// Converge checks until the federation holds the truth or within has
// passed, and returns the last report and how long it took. An error of a
// check (a member that does not answer) counts as not converged yet; the
// last one is returned with the last report when time runs out.
func (c *Checker) Converge(ctx context.Context, within time.Duration) (*Report, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	var (
		last    *Report
		lastErr error
	)
	report := start.Add(5 * time.Second)
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		r, err := c.Check(reqCtx)
		cancel()
		if err == nil {
			last, lastErr = r, nil
			if r.OK() {
				return r, time.Since(start), nil
			}
		} else {
			lastErr = err
		}
		if c.Log != nil && time.Now().After(report) {
			report = report.Add(5 * time.Second)
			if err != nil {
				c.Log("not converged after %s: %v", time.Since(start).Round(time.Second), err)
			} else {
				c.Log("not converged after %s:\n%s", time.Since(start).Round(time.Second), r)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if last == nil {
				last = &Report{}
			}
			return last, time.Since(start), lastErr
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// memberState is what a member holds, as the checker read it.
type memberState struct {
	Member
	key       string
	info      imports.Cluster
	exports   map[nsName]*v1alpha1.ServiceExport
	services  map[nsName]*corev1.Service
	ingresses []*networkingv1.Ingress
	imports   map[nsName][]*v1alpha1.ServiceImport
	policies  map[nsName][]*v1alpha1.GlobalTrafficPolicy
}

type nsName struct{ Namespace, Name string }

func (k nsName) String() string { return k.Namespace + "/" + k.Name }

// Check reads the federation once and compares it with the truth.
func (c *Checker) Check(ctx context.Context) (*Report, error) {
	r := &Report{}
	clusters, err := c.ControlPlane.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Clusters: %w", err)
	}
	byName := map[string]Member{}
	for _, m := range c.Members {
		byName[m.Name] = m
	}
	var states []*memberState
	for i := range clusters.Items {
		cl := &clusters.Items[i]
		if cl.DeletionTimestamp != nil || slices.Contains(c.Withdrawn, cl.Name) {
			continue
		}
		m, ok := byName[cl.Name]
		if !ok {
			return nil, fmt.Errorf("no client for the member of Cluster %s", cl.Name)
		}
		s, err := readMember(ctx, m, cl)
		if err != nil {
			return nil, fmt.Errorf("reading member %s: %w", cl.Name, err)
		}
		states = append(states, s)
	}

	// The control plane's imports: Compute over every serving member's
	// exports, as fedmesh-apiserver's recompute does.
	byService := map[nsName][]imports.Export{}
	for _, s := range states {
		for k, e := range s.exports {
			var svc *imports.Service
			if o := s.services[k]; o != nil {
				svc = imports.ServiceOf(o)
			}
			byService[k] = append(byService[k], imports.Export{Cluster: s.info, Export: imports.ExportOf(e), Service: svc})
		}
	}
	truth := map[nsName]*flomesh.ServiceImport{}
	truthV1 := map[nsName]*v1alpha1.ServiceImport{}
	for k, exports := range byService {
		imp := imports.Compute(c.Namespaces, k.Namespace, k.Name, exports)
		if imp == nil {
			continue
		}
		out := &v1alpha1.ServiceImport{}
		if err := v1alpha1.Convert_flomesh_ServiceImport_To_v1alpha1_ServiceImport(imp, out, nil); err != nil {
			return nil, fmt.Errorf("converting the import %s: %w", k, err)
		}
		truth[k], truthV1[k] = imp, out
	}
	r.Imports = len(truth)

	held, err := c.ControlPlane.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the control plane's ServiceImports: %w", err)
	}
	heldBy := map[nsName][]*v1alpha1.ServiceImport{}
	for i := range held.Items {
		o := &held.Items[i]
		k := nsName{o.Namespace, o.Name}
		heldBy[k] = append(heldBy[k], o)
	}
	compareImports(r, "control-plane", truthV1, heldBy, func(want, got *v1alpha1.ServiceImport) string {
		if want.UID != got.UID {
			return fmt.Sprintf("uid %s, want %s", got.UID, want.UID)
		}
		if !want.CreationTimestamp.Equal(&got.CreationTimestamp) {
			return fmt.Sprintf("creationTimestamp %s, want %s", got.CreationTimestamp, want.CreationTimestamp)
		}
		if d := jsonDiff("spec", want.Spec, got.Spec); d != "" {
			return d
		}
		return jsonDiff("status", want.Status, got.Status)
	})

	if c.WithoutSyncer {
		r.sort()
		return r, nil
	}
	gtps, err := c.ControlPlane.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the control plane's GlobalTrafficPolicies: %w", err)
	}
	policies := map[nsName]*v1alpha1.GlobalTrafficPolicy{}
	for i := range gtps.Items {
		o := &gtps.Items[i]
		policies[nsName{o.Namespace, o.Name}] = o
	}
	for _, s := range states {
		c.checkMember(r, s, truth, truthV1, policies)
	}
	r.sort()
	return r, nil
}

// compareImports compares the imports of one cluster with the truth.
func compareImports(r *Report, where string, want map[nsName]*v1alpha1.ServiceImport, held map[nsName][]*v1alpha1.ServiceImport,
	differ func(want, got *v1alpha1.ServiceImport) string) {
	for k, w := range want {
		got := held[k]
		if len(got) == 0 {
			r.Lost = append(r.Lost, fmt.Sprintf("%s: serviceimports %s", where, k))
			continue
		}
		if len(got) > 1 {
			r.Duplicated = append(r.Duplicated, fmt.Sprintf("%s: serviceimports %s listed %d times", where, k, len(got)))
		}
		duplicateEndpoints(r, where, got[0])
		if d := differ(w, got[0]); d != "" {
			r.Differ = append(r.Differ, fmt.Sprintf("%s: serviceimports %s: %s", where, k, d))
		}
	}
	for k, got := range held {
		if _, ok := want[k]; !ok {
			r.Stale = append(r.Stale, fmt.Sprintf("%s: serviceimports %s (endpoints of %s)", where, k, strings.Join(endpointKeys(got[0]), ",")))
		}
	}
}

// duplicateEndpoints reports a cluster listed twice among a port's
// endpoints.
func duplicateEndpoints(r *Report, where string, imp *v1alpha1.ServiceImport) {
	for _, p := range imp.Spec.Ports {
		seen := map[string]bool{}
		for _, e := range p.Endpoints {
			if seen[e.ClusterKey] {
				r.Duplicated = append(r.Duplicated, fmt.Sprintf("%s: serviceimports %s/%s: port %d lists %s twice",
					where, imp.Namespace, imp.Name, p.Port, e.ClusterKey))
			}
			seen[e.ClusterKey] = true
		}
	}
}

func endpointKeys(imp *v1alpha1.ServiceImport) []string {
	var keys []string
	for _, p := range imp.Spec.Ports {
		for _, e := range p.Endpoints {
			if !slices.Contains(keys, e.ClusterKey) {
				keys = append(keys, e.ClusterKey)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// checkMember compares what one member holds with what fedmesh-syncer's
// rules say it should, given the true control-plane imports and policies.
func (c *Checker) checkMember(r *Report, s *memberState, truth map[nsName]*flomesh.ServiceImport,
	truthV1 map[nsName]*v1alpha1.ServiceImport, policies map[nsName]*v1alpha1.GlobalTrafficPolicy) {
	// Every service the syncer would look at for this member: those of
	// the control plane, the member's exports and what it holds of the
	// syncer's.
	keys := map[nsName]bool{}
	for k := range truth {
		keys[k] = true
	}
	for k := range policies {
		keys[k] = true
	}
	for k := range s.exports {
		keys[k] = true
	}
	for k := range s.imports {
		keys[k] = true
	}
	for k := range s.policies {
		keys[k] = true
	}
	for _, ing := range s.ingresses {
		if syncer.Owned(ing) {
			keys[nsName{ing.Namespace, strings.TrimPrefix(ing.Name, syncer.IngressPrefix)}] = true
		}
	}
	valid := func(e *v1alpha1.ServiceExport) bool {
		return syncer.Valid(imports.ExportConditions(truth[nsName{e.Namespace, e.Name}], s.key, e.CreationTimestamp))
	}
	where := s.Name
	wantImports := map[nsName]*v1alpha1.ServiceImport{}
	heldImports := map[nsName][]*v1alpha1.ServiceImport{}
	for k := range keys {
		export := s.exports[k]
		_, hasService := s.services[k]
		hosts := export != nil || hasService
		var (
			wantImport    *v1alpha1.ServiceImport
			wantPolicy    *v1alpha1.GlobalTrafficPolicy
			wantIngress   *networkingv1.Ingress
			pathsConflict string
		)
		cp := imports.ExportConditions(truth[k], s.key, creation(export))
		if federates, _ := c.Namespaces.Federates(k.Namespace); federates {
			wantImport = syncer.DesiredImport(s.key, truthV1[k])
			wantPolicy = syncer.DesiredPolicy(policies[k], wantImport != nil, hosts)
			pathsConflict = syncer.PathsConflict(export, c.IngressClass, s.ingresses, s.rivals(export, valid))
			wantIngress = syncer.DesiredIngress(export, syncer.Valid(cp), pathsConflict, c.IngressClass)
		}

		// Imports: only those the syncer owns are its to write.
		if wantImport != nil {
			wantImports[k] = wantImport
		}
		for _, o := range s.imports[k] {
			if syncer.Owned(o) || wantImport != nil {
				heldImports[k] = append(heldImports[k], o)
			}
		}

		// Policies.
		livePolicies := s.policies[k]
		switch {
		case wantPolicy == nil:
			for _, o := range livePolicies {
				if syncer.Owned(o) {
					r.Stale = append(r.Stale, fmt.Sprintf("%s: globaltrafficpolicies %s", where, k))
				}
			}
		case len(livePolicies) == 0:
			r.Lost = append(r.Lost, fmt.Sprintf("%s: globaltrafficpolicies %s", where, k))
		case !syncer.PolicyUpToDate(wantPolicy, livePolicies[0]):
			r.Differ = append(r.Differ, fmt.Sprintf("%s: globaltrafficpolicies %s: %s", where, k,
				jsonDiff("spec", wantPolicy.Spec, livePolicies[0].Spec)))
		}

		// The Ingress of the member's export.
		var liveIngress *networkingv1.Ingress
		for _, ing := range s.ingresses {
			if ing.Namespace == k.Namespace && ing.Name == syncer.IngressName(k.Name) {
				liveIngress = ing
			}
		}
		switch {
		case liveIngress != nil && !syncer.Owned(liveIngress):
			// Someone else's; the syncer reports it as a conflict.
		case wantIngress == nil:
			if liveIngress != nil {
				r.Stale = append(r.Stale, fmt.Sprintf("%s: ingresses %s/%s", where, k.Namespace, liveIngress.Name))
			}
		case liveIngress == nil:
			r.Lost = append(r.Lost, fmt.Sprintf("%s: ingresses %s/%s", where, k.Namespace, wantIngress.Name))
		case !syncer.IngressUpToDate(wantIngress, liveIngress):
			r.Differ = append(r.Differ, fmt.Sprintf("%s: ingresses %s/%s: %s", where, k.Namespace, wantIngress.Name,
				jsonDiff("spec", wantIngress.Spec, liveIngress.Spec)))
		}

		// The conditions of the member's export: the control plane's
		// judgement and the syncer's own.
		if export != nil {
			want := syncer.DesiredExportConditions(cp, pathsConflict, export.Generation, export.CreationTimestamp)
			if _, changed := syncer.MergeConditions(export.Status.Conditions, want, time.Now()); changed {
				r.Differ = append(r.Differ, fmt.Sprintf("%s: serviceexports %s: conditions %s, want %s", where, k,
					conditionsString(export.Status.Conditions), conditionsString(want)))
			}
		}
	}
	compareImports(r, where, wantImports, heldImports, func(want, got *v1alpha1.ServiceImport) string {
		if !syncer.Owned(got) {
			return "not created by fedmesh-syncer"
		}
		if !syncer.ImportUpToDate(want, got) {
			d := want.DeepCopy()
			v1alpha1.SetObjectDefaults_ServiceImport(d)
			return jsonDiff("spec", d.Spec, got.Spec)
		}
		return ""
	})
}

// rivals returns the member's other exports that claim a path of export
// and that the control plane finds valid, as the syncer's pathRivals does.
func (s *memberState) rivals(export *v1alpha1.ServiceExport, valid func(*v1alpha1.ServiceExport) bool) []*v1alpha1.ServiceExport {
	if export == nil {
		return nil
	}
	var out []*v1alpha1.ServiceExport
	for _, e := range s.exports {
		if e.UID == export.UID {
			continue
		}
		claims := false
		for _, r := range export.Spec.Rules {
			for _, o := range e.Spec.Rules {
				claims = claims || (r.Path != "" && r.Path == o.Path)
			}
		}
		if claims && valid(e) {
			out = append(out, e)
		}
	}
	return out
}

func creation(e *v1alpha1.ServiceExport) metav1.Time {
	if e == nil {
		return metav1.Time{}
	}
	return e.CreationTimestamp
}

// readMember lists what the checker reads of a member.
func readMember(ctx context.Context, m Member, cl *v1alpha1.Cluster) (*memberState, error) {
	s := &memberState{
		Member:   m,
		key:      members.Key(cl.Name, &cl.Spec),
		exports:  map[nsName]*v1alpha1.ServiceExport{},
		services: map[nsName]*corev1.Service{},
		imports:  map[nsName][]*v1alpha1.ServiceImport{},
		policies: map[nsName][]*v1alpha1.GlobalTrafficPolicy{},
	}
	s.info = imports.Cluster{Name: cl.Name, Key: s.key, GatewayHost: cl.Spec.GatewayHost, GatewayPort: cl.Spec.GatewayPort}
	// The loopback federations give gateways as IPs; a name would be
	// resolved by fedmesh-apiserver, and the truth would need the same
	// answer.
	if ip := parseIP(cl.Spec.GatewayHost); ip != "" {
		s.info.GatewayIP = ip
	}
	s.info.Addresses = imports.GatewayAddresses(s.info)

	fl := m.Fedmesh.FlomeshV1alpha1()
	exports, err := fl.ServiceExports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range exports.Items {
		o := &exports.Items[i]
		s.exports[nsName{o.Namespace, o.Name}] = o
	}
	services, err := m.Kube.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range services.Items {
		o := &services.Items[i]
		s.services[nsName{o.Namespace, o.Name}] = o
	}
	ingresses, err := m.Kube.NetworkingV1().Ingresses(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range ingresses.Items {
		s.ingresses = append(s.ingresses, &ingresses.Items[i])
	}
	imps, err := fl.ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range imps.Items {
		o := &imps.Items[i]
		k := nsName{o.Namespace, o.Name}
		s.imports[k] = append(s.imports[k], o)
	}
	gtps, err := fl.GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range gtps.Items {
		o := &gtps.Items[i]
		k := nsName{o.Namespace, o.Name}
		s.policies[k] = append(s.policies[k], o)
	}
	return s, nil
}

// jsonDiff describes how two values differ as JSON, or returns "" when
// they serialize alike.
func jsonDiff(what string, want, got interface{}) string {
	w, errW := json.Marshal(want)
	g, errG := json.Marshal(got)
	if errW == nil && errG == nil && string(w) == string(g) {
		return ""
	}
	return fmt.Sprintf("%s %s, want %s", what, cut(string(g)), cut(string(w)))
}

func cut(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}

func conditionsString(conds []metav1.Condition) string {
	parts := make([]string, 0, len(conds))
	for _, c := range conds {
		parts = append(parts, fmt.Sprintf("%s=%s/%s(gen %d)", c.Type, c.Status, c.Reason, c.ObservedGeneration))
	}
	sort.Strings(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

// ReadyCondition returns a Cluster's Ready condition, or nil.
func ReadyCondition(cl *v1alpha1.Cluster) *metav1.Condition {
	return meta.FindStatusCondition(cl.Status.Conditions, "Ready")
}

// parseIP returns host in its canonical form if it is an IP, else "".
func parseIP(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return ""
}
