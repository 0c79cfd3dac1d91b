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

package imports

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// Condition types of an export, as KEP-1645 names them. ExportConditions
// returns both for every export, in this order, so that a condition written
// back onto a member's ServiceExport is always replaced rather than left
// stale.
//
// fedmesh-apiserver computes them, and only it: fedmesh-syncer copies them
// verbatim onto the member's ServiceExport.
const (
	// ConditionValid tells whether the export can be served at all.
	ConditionValid = "Valid"
	// ConditionConflict tells whether the exports of the service disagree
	// on a property, in which case the oldest export's value is used.
	ConditionConflict = "Conflict"
)

// ConditionPathsAvailable is the judgement of fedmesh-syncer, its only
// writer, on a member's ServiceExport: whether the export's paths are free
// at the cluster's gateway, that is, no Ingress of the gateway's class that
// fedmesh did not write, and no older export of the cluster, serves one of
// them. It is judged whatever the export's validity, so it depends on
// nothing Compute says of the export, and Compute reads it as an input: a
// False of the export's current generation, reason IngressConflict, makes
// the export Valid=False with that reason and message, and withdraws its
// endpoints, which nothing would serve.
const ConditionPathsAvailable = "PathsAvailable"

// ReasonPathsAvailable is the reason of PathsAvailable=True.
const ReasonPathsAvailable = "PathsAvailable"

// Reasons of the Valid condition.
const (
	// ReasonValid: the export keeps the rules of the API, the Service
	// exists and every rule names one of its ports.
	ReasonValid = "Valid"
	// ReasonInvalidExport: the export's spec breaks a rule or a limit of
	// the ServiceExport API (validation.ValidateServiceExportSpec), such as
	// a rule without a path, a port exposed at two paths, or more than
	// validation.MaxExportRules rules. The member's CRD refuses such an
	// export, but a member may run an older CRD or hold an export stored
	// before it. The message gives the errors, without the values they
	// quote, as far as they fit.
	ReasonInvalidExport = "InvalidExport"
	// ReasonServiceNotFound: the cluster has no Service of the export's
	// namespace and name.
	ReasonServiceNotFound = "ServiceNotFound"
	// ReasonExternalNameService: the Service is an ExternalName, which is
	// a DNS alias with no ports to route to; KEP-1645 does not export it.
	ReasonExternalNameService = "ExternalNameService"
	// ReasonNoRules: the export has no rules, so it exposes nothing.
	ReasonNoRules = "NoRules"
	// ReasonPortNotFound: a rule names a port number the Service lacks.
	ReasonPortNotFound = "PortNotFound"
	// ReasonIngressConflict: the export's paths are not free at its
	// cluster's gateway: an Ingress fedmesh does not manage serves one of
	// them, or an older export of the cluster holds one. It is the reason
	// of PathsAvailable=False, which the syncer writes (see
	// IngressConflict), and then of Valid=False.
	ReasonIngressConflict = "IngressConflict"
)

// IngressConflict returns the message of the PathsAvailable=False the
// syncer reported on the export for its current generation, if it did. A
// report of an earlier generation is ignored: the export changed since, and
// the syncer judges it again.
//
// The status is the member's to write, so the message is cut to
// maxMessageLength: a member could otherwise make every import of the
// service, and every other member's copy, as large as a condition message
// may be (32 KiB).
func IngressConflict(e *v1alpha1.ServiceExport) (string, bool) {
	for i := range e.Status.Conditions {
		c := &e.Status.Conditions[i]
		if c.Type == ConditionPathsAvailable && c.Status == metav1.ConditionFalse && c.ObservedGeneration == e.Generation {
			return truncate(c.Message, maxMessageLength), true
		}
	}
	return "", false
}

// Reasons of the Conflict condition. The names are those of the
// Multi-Cluster Services API (sigs.k8s.io/mcs-api), so that tools written
// for it read fedmesh's conditions unchanged.
const (
	// ReasonNoConflicts is the reason of every Conflict=False condition.
	ReasonNoConflicts = "NoConflicts"
	// ReasonPortConflict: exports define the same port number with a
	// different name, protocol or appProtocol.
	ReasonPortConflict = "PortConflict"
	// ReasonTypeConflict: some exported Services are headless and some are not.
	ReasonTypeConflict = "TypeConflict"
	// ReasonSessionAffinityConflict: exported Services differ in sessionAffinity.
	ReasonSessionAffinityConflict = "SessionAffinityConflict"
	// ReasonSessionAffinityConfigConflict: exported Services agree on
	// sessionAffinity but differ in its configuration (the ClientIP timeout).
	ReasonSessionAffinityConfigConflict = "SessionAffinityConfigConflict"
	// ReasonServiceAccountNameConflict: exports differ in serviceAccountName.
	ReasonServiceAccountNameConflict = "ServiceAccountNameConflict"
)

// conflictOrder is the precedence of the conflict reasons. A Condition has
// one reason, so when the exports disagree on several properties the first
// of them in this order names the condition and the message lists them all.
var conflictOrder = []string{
	ReasonPortConflict,
	ReasonTypeConflict,
	ReasonSessionAffinityConflict,
	ReasonSessionAffinityConfigConflict,
	ReasonServiceAccountNameConflict,
}

// Messages of the healthy conditions, which ExportConditions spells out.
const (
	// MessageValid is the message of Valid=True.
	MessageValid       = "the Service exists and has a port for every rule"
	messageNoConflicts = "the valid exports of this service agree"
)

// ExportConditions returns the Valid and Conflict conditions Compute
// reached for the export of the cluster with key clusterKey, or nil when
// imp lists no such export. The syncer writes them onto that ServiceExport.
//
// An export listed without conditions is valid and in no conflict; its
// conditions are built here as Compute would have built them, with the
// generation Compute judged and created, the export's creation time, as
// their transition time. Listed conditions are imp's own: copy them before
// changing them.
func ExportConditions(imp *flomesh.ServiceImport, clusterKey string, created metav1.Time) []metav1.Condition {
	if imp == nil {
		return nil
	}
	for i := range imp.Status.Exports {
		es := &imp.Status.Exports[i]
		if es.Cluster != clusterKey {
			continue
		}
		if len(es.Conditions) > 0 {
			return es.Conditions
		}
		return []metav1.Condition{
			exportCondition(ConditionValid, metav1.ConditionTrue, ReasonValid, MessageValid, es.ObservedGeneration, created),
			exportCondition(ConditionConflict, metav1.ConditionFalse, ReasonNoConflicts, messageNoConflicts, es.ObservedGeneration, created),
		}
	}
	return nil
}

// newCondition builds a condition of the export of candidate e.
func newCondition(condType string, status metav1.ConditionStatus, reason, message string, e *candidate) metav1.Condition {
	return exportCondition(condType, status, reason, message, e.export.Generation, e.export.CreationTimestamp)
}

// exportCondition builds a condition of an export of the given generation,
// created at created. Its LastTransitionTime is the export's creation time
// rather than the wall clock: every replica of fedmesh-apiserver must
// compute byte-identical imports, and an export's conditions can only have
// started to hold once the export existed. The writer of the conditions
// keeps an older transition time when the status did not change.
func exportCondition(condType string, status metav1.ConditionStatus, reason, message string, generation int64, created metav1.Time) metav1.Condition {
	return metav1.Condition{
		Type:               condType,
		Status:             status,
		ObservedGeneration: generation,
		LastTransitionTime: created,
		Reason:             reason,
		Message:            message,
	}
}
