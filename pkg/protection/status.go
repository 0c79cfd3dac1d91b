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

package protection

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	flomeshac "github.com/fedmesh/fedmesh/generated/applyconfiguration/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

const (
	// ConditionResolved is True when every target of a policy is the key
	// of a registered Cluster that is not being deleted.
	ConditionResolved = "Resolved"
	// ReasonAllTargetsKnown: every target is a live registered Cluster (a
	// policy without targets too).
	ReasonAllTargetsKnown = "AllTargetsKnown"
	// ReasonUnknownTargets: some target names no Cluster, or a Cluster
	// being deleted; the message lists them.
	ReasonUnknownTargets = "UnknownTargets"
)

// The messages of a target that does not resolve, as `kubectl fedmesh
// status service` shows them after the key.
const (
	msgUnknown     = "no registered Cluster has this key"
	msgNotExported = "does not export the service"
)

// syncPolicy writes the status of a policy, if it differs from what the
// policy's targets, their Clusters and the import of its service say.
func (c *Controller) syncPolicy(ctx context.Context, key string) error {
	logger := klog.FromContext(ctx)
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	policy, err := c.policies.GlobalTrafficPolicies(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("GlobalTrafficPolicy not found, ignoring", "policy", klog.KRef(namespace, name))
		return nil
	}
	if err != nil {
		return err
	}

	si, _ := c.imports.Get(namespace, name)
	targets := targetStatuses(policy, func(key string) *v1alpha1.Cluster {
		cluster, err := ClusterByKey(c.clusterIndex, key)
		if err != nil {
			// The index function never fails on a Cluster; a miss is the
			// worst it can do.
			logger.Error(err, "Looking up a Cluster by key", "key", key)
		}
		return cluster
	}, si)
	cond := resolvedCondition(policy, targets, c.now())

	clusters, err := c.clusters.List(labels.Everything())
	if err != nil {
		return err
	}
	var imp *v1alpha1.ServiceImport
	if si != nil {
		imp = &v1alpha1.ServiceImport{}
		if err := v1alpha1.Convert_flomesh_ServiceImport_To_v1alpha1_ServiceImport(si, imp, nil); err != nil {
			return fmt.Errorf("converting the import of %s: %w", key, err)
		}
	}
	consumers, routed := consumerRoutes(routeInput{Namespace: namespace, Name: name, Policy: &policy.Spec, Clusters: clusters, Import: imp})
	routed = withTransition(policy, routed, c.now())

	if upToDate(policy, targets, consumers, cond, routed) {
		return nil
	}

	apply := flomeshac.GlobalTrafficPolicy(name, namespace).
		// The UID makes the write fail, rather than land on another policy
		// of the same name, if this one was deleted meanwhile.
		WithUID(policy.UID).
		WithStatus(flomeshac.GlobalTrafficPolicyStatus().
			WithTargets(targetApplyConfigurations(targets)...).
			WithConsumers(consumerApplyConfigurations(consumers)...).
			WithConditions(conditionApplyConfiguration(cond), conditionApplyConfiguration(routed)))
	_, err = c.client.FlomeshV1alpha1().GlobalTrafficPolicies(namespace).ApplyStatus(ctx, apply,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing the status of GlobalTrafficPolicy %s: %w", key, err)
	}
	logger.V(3).Info("Wrote GlobalTrafficPolicy status", "policy", klog.KObj(policy), "resolved", cond.Status, "routed", routed.Status)
	return nil
}

// targetStatuses returns the status of each distinct target of policy, in
// the order of spec.targets. clusterByKey returns the Cluster of a key, or
// nil; si is the import of the policy's service, or nil.
func targetStatuses(policy *v1alpha1.GlobalTrafficPolicy, clusterByKey func(string) *v1alpha1.Cluster, si *flomesh.ServiceImport) []v1alpha1.TargetStatus {
	seen := sets.New[string]()
	var out []v1alpha1.TargetStatus
	for _, t := range policy.Spec.Targets {
		if seen.Has(t.ClusterKey) {
			continue
		}
		seen.Insert(t.ClusterKey)
		out = append(out, targetStatus(t.ClusterKey, clusterByKey(t.ClusterKey), si))
	}
	return out
}

func targetStatus(key string, cluster *v1alpha1.Cluster, si *flomesh.ServiceImport) v1alpha1.TargetStatus {
	st := v1alpha1.TargetStatus{ClusterKey: key}
	switch {
	case cluster == nil:
		st.Message = msgUnknown
		return st
	case cluster.DeletionTimestamp != nil:
		st.Message = fmt.Sprintf("Cluster %q, of this key, is being deleted", cluster.Name)
		return st
	}
	st.Known = true
	st.Ready = isReady(cluster)
	st.Exported = exports(si, key)
	var notes []string
	if !st.Ready {
		// The reason is fedmesh's own; the message may quote the member.
		note := "not Ready"
		if cond := meta.FindStatusCondition(cluster.Status.Conditions, clusterset.ConditionReady); cond != nil && cond.Reason != "" {
			note += " (" + cond.Reason + ")"
		}
		notes = append(notes, note)
	}
	if !st.Exported {
		notes = append(notes, msgNotExported)
	}
	st.Message = strings.Join(notes, "; ")
	return st
}

func isLive(c *v1alpha1.Cluster) bool {
	return c.DeletionTimestamp == nil
}

func readyReason(c *v1alpha1.Cluster) string {
	if cond := meta.FindStatusCondition(c.Status.Conditions, clusterset.ConditionReady); cond != nil {
		return cond.Reason
	}
	return ""
}

func isReady(c *v1alpha1.Cluster) bool {
	return meta.IsStatusConditionTrue(c.Status.Conditions, clusterset.ConditionReady)
}

// exports reports whether the cluster of key serves the import with a
// valid export. status.clusters lists only valid exports; an export listed
// as not Valid is not taken, whatever else the import says.
func exports(si *flomesh.ServiceImport, key string) bool {
	if si == nil {
		return false
	}
	for _, e := range si.Status.Exports {
		if e.Cluster == key && meta.IsStatusConditionFalse(e.Conditions, imports.ConditionValid) {
			return false
		}
	}
	for _, s := range si.Status.Clusters {
		if s.Cluster == key {
			return true
		}
	}
	return false
}

// resolvedCondition returns the Resolved condition of policy with those
// targets. Its transition time is kept while its status is unchanged.
func resolvedCondition(policy *v1alpha1.GlobalTrafficPolicy, targets []v1alpha1.TargetStatus, now time.Time) metav1.Condition {
	cond := metav1.Condition{
		Type:               ConditionResolved,
		Status:             metav1.ConditionTrue,
		ObservedGeneration: policy.Generation,
		Reason:             ReasonAllTargetsKnown,
		Message:            "every target is the key of a registered Cluster",
	}
	var unknown []string
	for _, t := range targets {
		if !t.Known {
			unknown = append(unknown, t.ClusterKey+" ("+t.Message+")")
		}
	}
	if len(unknown) > 0 {
		cond.Status = metav1.ConditionFalse
		cond.Reason = ReasonUnknownTargets
		cond.Message = "targets that name no live Cluster: " + ListNames(unknown)
	}
	return withTransition(policy, cond, now)
}

// withTransition returns cond with its transition time: now, or the
// policy's condition's own while its status is unchanged.
func withTransition(policy *v1alpha1.GlobalTrafficPolicy, cond metav1.Condition, now time.Time) metav1.Condition {
	cond.ObservedGeneration = policy.Generation
	cond.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	if old := meta.FindStatusCondition(policy.Status.Conditions, cond.Type); old != nil && old.Status == cond.Status {
		cond.LastTransitionTime = old.LastTransitionTime
	}
	return cond
}

// upToDate reports whether policy's status already says targets,
// consumers and the conditions: a status that does is not written again,
// so that a sync that changes nothing costs no write.
func upToDate(policy *v1alpha1.GlobalTrafficPolicy, targets []v1alpha1.TargetStatus, consumers []v1alpha1.ConsumerRoute, conds ...metav1.Condition) bool {
	for _, cond := range conds {
		old := meta.FindStatusCondition(policy.Status.Conditions, cond.Type)
		if old == nil || old.Status != cond.Status || old.Reason != cond.Reason || old.Message != cond.Message ||
			old.ObservedGeneration != cond.ObservedGeneration {
			return false
		}
	}
	return sameList(policy.Status.Targets, targets) && sameList(policy.Status.Consumers, consumers)
}

// sameList compares two lists of a status, nil and empty alike.
func sameList[T any](a, b []T) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return equality.Semantic.DeepEqual(a, b)
}

func conditionApplyConfiguration(cond metav1.Condition) *metav1ac.ConditionApplyConfiguration {
	return metav1ac.Condition().
		WithType(cond.Type).WithStatus(cond.Status).WithObservedGeneration(cond.ObservedGeneration).
		WithReason(cond.Reason).WithMessage(cond.Message).WithLastTransitionTime(cond.LastTransitionTime)
}

func consumerApplyConfigurations(routes []v1alpha1.ConsumerRoute) []*flomeshac.ConsumerRouteApplyConfiguration {
	out := make([]*flomeshac.ConsumerRouteApplyConfiguration, 0, len(routes))
	for _, r := range routes {
		ac := flomeshac.ConsumerRoute().WithCluster(r.Cluster).WithPort(r.Port)
		for _, t := range r.Tiers {
			tier := flomeshac.RouteTier()
			for _, d := range t.Destinations {
				tier.WithDestinations(flomeshac.RouteDestination().WithCluster(d.Cluster).WithWeight(d.Weight))
			}
			ac.WithTiers(tier)
		}
		if r.Message != "" {
			ac.WithMessage(r.Message)
		}
		out = append(out, ac)
	}
	return out
}

func targetApplyConfigurations(targets []v1alpha1.TargetStatus) []*flomeshac.TargetStatusApplyConfiguration {
	out := make([]*flomeshac.TargetStatusApplyConfiguration, 0, len(targets))
	for _, t := range targets {
		ac := flomeshac.TargetStatus().WithClusterKey(t.ClusterKey).
			WithKnown(t.Known).WithReady(t.Ready).WithExported(t.Exported)
		if t.Message != "" {
			ac.WithMessage(t.Message)
		}
		out = append(out, ac)
	}
	return out
}
