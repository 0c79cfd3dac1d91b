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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"math"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	fedac "github.com/fedmesh/fedmesh/generated/applyconfiguration/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

// Reasons of the Warning events the syncer records in a member.
const (
	// ReasonNotManaged: an object the syncer would write exists and was
	// not created by the syncer; it is left as it is.
	ReasonNotManaged = "NotManagedByFedmesh"
)

// reconcile makes a member hold what the federation wants of one service:
// its import, its policy, the Ingress of the member's own export and that
// export's conditions. The parts are independent: one failing does not
// keep the others from being written.
func (s *Syncer) reconcile(ctx context.Context, m *member, k serviceKey) error {
	cpImport, err := s.imports.ServiceImports(k.Namespace).Get(k.Name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		cpImport = nil
	}
	gtp, err := s.policies.GlobalTrafficPolicies(k.Namespace).Get(k.Name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		gtp = nil
	}
	export, err := m.exports.ServiceExports(k.Namespace).Get(k.Name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		export = nil
	}
	_, svcErr := m.services.ByNamespace(k.Namespace).Get(k.Name)
	hosts := export != nil || svcErr == nil

	liveImport, err := m.imports.ServiceImports(k.Namespace).Get(k.Name)
	if err != nil {
		liveImport = nil
	}
	cpConditions := exportConditions(cpImport, m.key, export)
	var (
		wantImport    *v1alpha1.ServiceImport
		wantPolicy    *v1alpha1.GlobalTrafficPolicy
		wantIngress   *networkingv1.Ingress
		pathsConflict string
	)
	// Nothing of the federation is written into a namespace that does not
	// federate, and what was written there before (when it did) goes. The
	// export's conditions, which say why, are still written.
	if federates, _ := s.opts.Namespaces.Federates(k.Namespace); federates {
		wantImport = DesiredImport(m.key, cpImport)
		wantPolicy = DesiredPolicy(gtp, wantImport != nil, hosts)
		pathsConflict = PathsConflict(export, s.opts.IngressClass, m.ingressesInWay(export), s.pathRivals(m, export))
		wantIngress = DesiredIngress(export, Valid(cpConditions), pathsConflict, s.opts.IngressClass)
		if pathsConflict != "" {
			m.reportConflict(export, export.UID, imports.ReasonIngressConflict, pathsConflict)
		}
	}

	errs := []error{
		s.syncImport(ctx, m, k, wantImport, liveImport),
		// A policy alone never makes a namespace: where the member hosts
		// the service, the namespace exists.
		s.syncPolicy(ctx, m, k, wantPolicy, wantImport != nil),
		s.syncIngress(ctx, m, k, wantIngress),
	}
	if export != nil {
		cp := cpConditions
		if len(cp) == 0 {
			// The control plane has no judgement now (its import lags, or
			// the member is out of its grace): the last one stays, rather
			// than be dropped by an apply that leaves it out.
			cp = judged(export.Status.Conditions)
		}
		errs = append(errs, s.syncExportStatus(ctx, m, export,
			DesiredExportConditions(cp, pathsConflict, export.Generation, export.CreationTimestamp)))
	}
	return errors.Join(errs...)
}

// pathRivals returns the member's other exports that claim a path of
// export and that the control plane found valid: those that may hold the
// path.
func (s *Syncer) pathRivals(m *member, export *v1alpha1.ServiceExport) []*v1alpha1.ServiceExport {
	if export == nil {
		return nil
	}
	var out []*v1alpha1.ServiceExport
	for _, r := range export.Spec.Rules {
		for _, e := range m.exportsClaiming(r.Path) {
			if e.UID == export.UID || slices.Contains(out, e) {
				continue
			}
			imp, err := s.imports.ServiceImports(e.Namespace).Get(e.Name)
			if err != nil {
				continue
			}
			if Valid(exportConditions(imp, m.key, e)) {
				out = append(out, e)
			}
		}
	}
	return out
}

// exportConditions returns the conditions the control plane computed for
// the export of the cluster of key clusterKey. Healthy exports are listed
// without conditions; theirs take the export's creation as transition time.
func exportConditions(imp *v1alpha1.ServiceImport, clusterKey string, export *v1alpha1.ServiceExport) []metav1.Condition {
	if imp == nil {
		return nil
	}
	internal := &flomesh.ServiceImport{}
	if err := v1alpha1.Convert_v1alpha1_ServiceImport_To_flomesh_ServiceImport(imp, internal, nil); err != nil {
		return nil
	}
	var created metav1.Time
	if export != nil {
		created = export.CreationTimestamp
	}
	return imports.ExportConditions(internal, clusterKey, created)
}

// countWrite counts, and logs, a mutating request about to be sent.
func countWrite(ctx context.Context, m *member, resource, verb string, namespace, name string) {
	writesTotal.WithLabelValues(m.name, resource, verb).Inc()
	klog.FromContext(ctx).V(2).Info("Writing to member", "resource", resource, "verb", verb, "namespace", namespace, "name", name)
}

func (s *Syncer) syncImport(ctx context.Context, m *member, k serviceKey, want, live *v1alpha1.ServiceImport) error {
	switch {
	case want == nil:
		if live != nil && Owned(live) {
			return deleteOwned(ctx, m, "serviceimports", live, m.fed.FlomeshV1alpha1().ServiceImports(k.Namespace).Delete)
		}
		return nil
	case live != nil && !Owned(live):
		m.reportConflict(live, live.UID, ReasonNotManaged, fmt.Sprintf(
			"ServiceImport %s/%s was not created by fedmesh; the federation's import of the service is not written", k.Namespace, k.Name))
		return nil
	case live != nil && ImportUpToDate(want, live):
		return nil
	}
	if ok, err := s.ensureNamespace(ctx, m, k.Namespace, true); !ok || err != nil {
		return err
	}
	countWrite(ctx, m, "serviceimports", "apply", k.Namespace, k.Name)
	_, err := m.fed.FlomeshV1alpha1().ServiceImports(k.Namespace).Apply(ctx, importApplyConfig(want),
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

func (s *Syncer) syncPolicy(ctx context.Context, m *member, k serviceKey, want *v1alpha1.GlobalTrafficPolicy, mayCreateNamespace bool) error {
	live, err := m.policies.GlobalTrafficPolicies(k.Namespace).Get(k.Name)
	if err != nil {
		live = nil
	}
	switch {
	case want == nil:
		if live != nil && Owned(live) {
			return deleteOwned(ctx, m, "globaltrafficpolicies", live, m.fed.FlomeshV1alpha1().GlobalTrafficPolicies(k.Namespace).Delete)
		}
		return nil
	case live != nil && !Owned(live):
		m.reportConflict(live, live.UID, ReasonNotManaged, fmt.Sprintf(
			"GlobalTrafficPolicy %s/%s was not created by fedmesh; the federation's policy of the service is not written", k.Namespace, k.Name))
		return nil
	case live != nil && PolicyUpToDate(want, live):
		return nil
	}
	if ok, err := s.ensureNamespace(ctx, m, k.Namespace, mayCreateNamespace); !ok || err != nil {
		return err
	}
	countWrite(ctx, m, "globaltrafficpolicies", "apply", k.Namespace, k.Name)
	_, err = m.fed.FlomeshV1alpha1().GlobalTrafficPolicies(k.Namespace).Apply(ctx, policyApplyConfig(want),
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

// syncIngress keeps the Ingress of the member's export of k. The export
// lives in the namespace, so no namespace is ever created for it.
func (s *Syncer) syncIngress(ctx context.Context, m *member, k serviceKey, want *networkingv1.Ingress) error {
	live, err := m.ingresses.Ingresses(k.Namespace).Get(IngressName(k.Name))
	if err != nil {
		live = nil
	}
	switch {
	case live != nil && !Owned(live):
		// PathsConflict reported it as the export's conflict.
		return nil
	case want == nil:
		if live != nil {
			return deleteOwned(ctx, m, "ingresses", live, m.kube.NetworkingV1().Ingresses(k.Namespace).Delete)
		}
		return nil
	case live != nil && IngressUpToDate(want, live):
		return nil
	}
	countWrite(ctx, m, "ingresses", "apply", k.Namespace, want.Name)
	_, err = m.kube.NetworkingV1().Ingresses(k.Namespace).Apply(ctx, ingressApplyConfig(want),
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

// syncExportStatus writes the Valid and Conflict conditions onto the
// member's export. Other conditions, of other writers, are left alone:
// server-side apply merges the list by type.
func (s *Syncer) syncExportStatus(ctx context.Context, m *member, export *v1alpha1.ServiceExport, want []metav1.Condition) error {
	if len(want) == 0 {
		return nil
	}
	conds, changed := MergeConditions(export.Status.Conditions, want, time.Now())
	if !changed {
		return nil
	}
	countWrite(ctx, m, "serviceexports/status", "apply", export.Namespace, export.Name)
	_, err := m.fed.FlomeshV1alpha1().ServiceExports(export.Namespace).ApplyStatus(ctx,
		exportStatusApplyConfig(export.Namespace, export.Name, conds),
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

// ensureNamespace reports whether the member has the namespace to write
// into, creating it, labelled as the syncer's, when it lacks it and create
// is set. A namespace being deleted takes no new object: the write waits
// until the member's namespace controller has removed it, whose deletion
// queues the namespace's services again (member.addHandlers), and the
// namespace is then made again only if an import still needs it.
//
// The syncer never deletes namespaces: by the time it no longer needs one,
// its users may have put their own objects there.
func (s *Syncer) ensureNamespace(ctx context.Context, m *member, name string, create bool) (bool, error) {
	if o, err := m.namespaces.Get(name); err == nil {
		if a, err := meta.Accessor(o); err == nil && a.GetDeletionTimestamp() != nil {
			klog.FromContext(ctx).V(2).Info("Namespace is being deleted; writing into it once it is gone", "namespace", name)
			return false, nil
		}
		return true, nil
	}
	if !create {
		return false, nil
	}
	if err := m.createNamespace(ctx, name); err != nil {
		return false, err
	}
	return true, nil
}

// createNamespace creates a namespace, labelled as the syncer's, or waits
// for the creation of it already in flight; one that exists is no error.
func (m *member) createNamespace(ctx context.Context, name string) error {
	m.creatingMu.Lock()
	if m.creating == nil {
		m.creating = map[string]*namespaceCreation{}
	}
	c, inFlight := m.creating[name]
	if inFlight {
		c.waiters++
	} else {
		c = &namespaceCreation{done: make(chan struct{})}
		m.creating[name] = c
	}
	m.creatingMu.Unlock()
	if inFlight {
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	countWrite(ctx, m, "namespaces", "create", "", name)
	_, err := m.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ownedLabels()},
	}, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		err = nil
	}
	c.err = err
	m.creatingMu.Lock()
	delete(m.creating, name)
	m.creatingMu.Unlock()
	close(c.done)
	return err
}

// deleteOwned deletes an object the syncer created, on the condition that
// it is still that object: one deleted and recreated by someone else in
// the meantime has another UID and is left alone.
func deleteOwned(ctx context.Context, m *member, resource string, obj metav1.Object,
	del func(context.Context, string, metav1.DeleteOptions) error) error {
	countWrite(ctx, m, resource, "delete", obj.GetNamespace(), obj.GetName())
	return deleteSame(ctx, obj, del)
}

// deleteSame deletes obj on the condition that it is still that object.
func deleteSame(ctx context.Context, obj metav1.Object, del func(context.Context, string, metav1.DeleteOptions) error) error {
	uid := obj.GetUID()
	err := del(ctx, obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// cleanup removes from a member that left the federation everything the
// syncer wrote into it: its imports, policies and Ingresses, and its
// conditions on the member's exports. It retries until it succeeds or
// CleanupTimeout passes, as the member may be unreachable for good. The
// CRDs stay: deleting them would delete the member's ServiceExports. It
// stops early when ctx, the syncer's, is done.
func (s *Syncer) cleanup(ctx context.Context, m *member) {
	if m.err != nil {
		return
	}
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithTimeout(ctx, s.opts.CleanupTimeout)
	defer cancel()
	start := time.Now()
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: s.opts.MaxRetryDelay}
	for {
		err := s.cleanupOnce(ctx, m)
		if err == nil {
			logger.Info("Removed what was written into a departed member", "after", time.Since(start).Round(time.Millisecond))
			s.revokeTokens(ctx, m)
			return
		}
		logger.Info("Cleaning a departed member failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			logger.Error(err, "Gave up cleaning a departed member", "after", time.Since(start).Round(time.Millisecond))
			return
		case <-time.After(backoff.Step()):
		}
	}
}

// revokeTokens ends, last, fedmesh's access to a member whose Cluster is
// gone: it deletes the Secrets its tokens are bound to, this token's
// among them (memberrbac.TokenRules). A member joined otherwise (a
// kubeconfig pasted into a Cluster) grants no such right; its credentials
// are its administrator's to revoke.
func (s *Syncer) revokeTokens(ctx context.Context, m *member) {
	err := m.kube.CoreV1().Secrets(memberrbac.IdentityNamespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: memberrbac.TokenSecretsSelector})
	logger := klog.FromContext(ctx)
	switch {
	case err == nil:
		logger.Info("Revoked fedmesh's tokens in a departed member")
	case apierrors.IsForbidden(err), apierrors.IsNotFound(err), apierrors.IsUnauthorized(err):
		logger.Info("fedmesh's tokens in a departed member are left to its administrator", "reason", apierrors.ReasonForError(err))
	default:
		logger.Error(err, "Revoking fedmesh's tokens in a departed member")
	}
}

func (s *Syncer) cleanupOnce(ctx context.Context, m *member) error {
	return RemoveWritten(ctx, m.fed, m.kube, func(resource, verb, namespace, name string) {
		countWrite(ctx, m, resource, verb, namespace, name)
	})
}

// Written is an object fedmesh-syncer wrote into a member.
type Written struct {
	// Resource is the object's resource: serviceimports,
	// globaltrafficpolicies or ingresses.
	Resource, Namespace, Name string
}

// ListWritten lists the objects fedmesh-syncer wrote into a member: those
// of the resources it writes that carry its label.
func ListWritten(ctx context.Context, fed versioned.Interface, kube kubernetes.Interface) ([]Written, error) {
	owned := metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue}
	var out []Written
	imps, err := fed.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return nil, err
	}
	for _, o := range imps.Items {
		out = append(out, Written{"serviceimports", o.Namespace, o.Name})
	}
	gtps, err := fed.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return nil, err
	}
	for _, o := range gtps.Items {
		out = append(out, Written{"globaltrafficpolicies", o.Namespace, o.Name})
	}
	ings, err := kube.NetworkingV1().Ingresses(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return nil, err
	}
	for _, o := range ings.Items {
		out = append(out, Written{"ingresses", o.Namespace, o.Name})
	}
	return out, nil
}

// RemoveWritten removes from a member everything fedmesh-syncer wrote
// into it: its imports, policies and Ingresses (those carrying its label,
// each only if it is still the object listed), and its conditions on the
// member's exports. It is the one definition of that cleanup: the syncer
// runs it, with fedmesh's identity, when a Cluster leaves the federation,
// and "kubectl fedmesh unjoin", with the member administrator's, on what
// the syncer could not remove. record, if set, is told of each write
// before it is sent. The CRDs and namespaces stay.
func RemoveWritten(ctx context.Context, fed versioned.Interface, kube kubernetes.Interface, record func(resource, verb, namespace, name string)) error {
	if record == nil {
		record = func(string, string, string, string) {}
	}
	del := func(resource string, obj metav1.Object, del func(context.Context, string, metav1.DeleteOptions) error) error {
		record(resource, "delete", obj.GetNamespace(), obj.GetName())
		return deleteSame(ctx, obj, del)
	}
	owned := metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue}
	fl := fed.FlomeshV1alpha1()
	imps, err := fl.ServiceImports(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return err
	}
	for i := range imps.Items {
		o := &imps.Items[i]
		if err := del("serviceimports", o, fl.ServiceImports(o.Namespace).Delete); err != nil {
			return err
		}
	}
	gtps, err := fl.GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return err
	}
	for i := range gtps.Items {
		o := &gtps.Items[i]
		if err := del("globaltrafficpolicies", o, fl.GlobalTrafficPolicies(o.Namespace).Delete); err != nil {
			return err
		}
	}
	ings, err := kube.NetworkingV1().Ingresses(metav1.NamespaceAll).List(ctx, owned)
	if err != nil {
		return err
	}
	for i := range ings.Items {
		o := &ings.Items[i]
		if err := del("ingresses", o, kube.NetworkingV1().Ingresses(o.Namespace).Delete); err != nil {
			return err
		}
	}
	exports, err := fl.ServiceExports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range exports.Items {
		e := &exports.Items[i]
		if !managesStatus(e) {
			continue
		}
		// Applying no status gives up the syncer's conditions: server-side
		// apply removes the fields a manager stops applying. (An empty
		// status would be sent as null, which the CRD's schema rejects.)
		record("serviceexports/status", "apply", e.Namespace, e.Name)
		body, err := json.Marshal(fedac.ServiceExport(e.Name, e.Namespace))
		if err != nil {
			return err
		}
		if _, err := fl.ServiceExports(e.Namespace).Patch(ctx, e.Name, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}, "status"); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// managesStatus reports whether the syncer wrote status fields of obj.
func managesStatus(obj metav1.Object) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == FieldManager && f.Subresource == "status" {
			return true
		}
	}
	return false
}
