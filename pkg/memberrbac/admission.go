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

package memberrbac

import (
	"fmt"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// What RBAC cannot say is said by ValidatingAdmissionPolicies, which
// "kubectl fedmesh join" installs in the member, as NodeRestriction
// confines each kubelet to its own node. RBAC grants verbs on every object
// of a resource; the policies narrow them to the objects fedmesh owns.

const (
	// IdentityServiceAccount is fedmesh's ServiceAccount in
	// IdentityNamespace: the identity of fedmesh-apiserver and
	// fedmesh-syncer in the member.
	IdentityServiceAccount = "fedmesh"
	// ManagedByLabel, with ManagedByValue, marks what fedmesh-syncer
	// wrote into a member. Under the policies only fedmesh's identity may
	// set it, and that identity may change only objects that carry it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "fedmesh-syncer"
	// IngressPrefix starts the name of every Ingress fedmesh writes, so
	// that it never takes the name a user would give an Ingress of their
	// own Service.
	IngressPrefix = "fedmesh-"
	// ConfinePolicy confines fedmesh's identity to its own objects.
	ConfinePolicy = "fedmesh-confine"
	// OwnershipPolicy keeps every other identity from passing an object
	// off as fedmesh's.
	OwnershipPolicy = "fedmesh-ownership"
)

// Username is the name the member's authenticator gives fedmesh's
// identity.
func Username() string {
	return "system:serviceaccount:" + IdentityNamespace + ":" + IdentityServiceAccount
}

// policyResources are the resources fedmesh-syncer creates, updates and
// deletes in a member, besides the status of ServiceExports (which RBAC
// already confines to the status subresource) and events.
var policyResources = []admissionregistrationv1.NamedRuleWithOperations{
	resourceRule("flomesh.io", "serviceimports", "globaltrafficpolicies"),
	resourceRule("networking.k8s.io", "ingresses"),
	resourceRule("", "namespaces"),
}

func resourceRule(group string, resources ...string) admissionregistrationv1.NamedRuleWithOperations {
	return admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: resources,
			Scope: ptr.To(admissionregistrationv1.AllScopes),
		},
	}}
}

// carriesLabel is a CEL expression: obj carries fedmesh's label.
func carriesLabel(obj string) string {
	return fmt.Sprintf("has(%[1]s.metadata.labels) && %[2]s in %[1]s.metadata.labels && %[1]s.metadata.labels[%[2]s] == %[3]s",
		obj, strconv.Quote(ManagedByLabel), strconv.Quote(ManagedByValue))
}

// celList is a CEL list of strings.
func celList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// AdmissionPolicies returns the policies and their bindings that confine
// fedmesh in a member, given the class of the Ingresses fedmesh-syncer
// writes ("" for none: the member's default class) and the namespaces it
// must never write into.
//
// fedmesh-confine applies to fedmesh's identity alone. It may
//   - update or delete only objects that carry its label,
//   - create or update only objects that carry its label, so namespaces
//     it creates carry it too,
//   - write Ingresses only of its class and name prefix,
//   - write nothing into the reserved namespaces.
//
// fedmesh-ownership applies to every other identity: none may create an
// object with fedmesh's label, or add the label to an object. So the
// label is proof that fedmesh wrote the object, and fedmesh-syncer, which
// updates and deletes only what carries it, cannot be led to take over
// another's Ingress or import by a label anyone could copy.
func AdmissionPolicies(ingressClass string, reservedNamespaces []string) ([]*admissionregistrationv1.ValidatingAdmissionPolicy, []*admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	class := "!has(object.spec.ingressClassName)"
	if ingressClass != "" {
		class = "has(object.spec.ingressClassName) && object.spec.ingressClassName == " + strconv.Quote(ingressClass)
	}
	self := strconv.Quote(Username())
	forbidden := ptr.To(metav1.StatusReasonForbidden)
	confine := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: ConfinePolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: policyResources},
			MatchConditions: []admissionregistrationv1.MatchCondition{
				{Name: "fedmesh", Expression: "request.userInfo.username == " + self},
			},
			Validations: []admissionregistrationv1.Validation{
				{
					Expression: "request.operation == 'CREATE' || (" + carriesLabel("oldObject") + ")",
					Message:    "fedmesh may update or delete only objects it created, which carry the label " + ManagedByLabel + "=" + ManagedByValue,
					Reason:     forbidden,
				},
				{
					Expression: "request.operation == 'DELETE' || (" + carriesLabel("object") + ")",
					Message:    "what fedmesh writes carries the label " + ManagedByLabel + "=" + ManagedByValue,
					Reason:     forbidden,
				},
				{
					Expression: "request.resource.resource != 'ingresses' || request.operation == 'DELETE' || (object.metadata.name.startsWith(" +
						strconv.Quote(IngressPrefix) + ") && " + class + ")",
					Message: fmt.Sprintf("fedmesh writes only Ingresses named %s* of class %q", IngressPrefix, ingressClass),
					Reason:  forbidden,
				},
				{
					Expression: "request.operation == 'DELETE' || !(request.namespace in " + celList(reservedNamespaces) +
						") && !(request.resource.resource == 'namespaces' && object.metadata.name in " + celList(reservedNamespaces) + ")",
					Message: "fedmesh never writes into the namespaces " + strings.Join(reservedNamespaces, ", "),
					Reason:  forbidden,
				},
			},
		},
	}
	ownership := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: OwnershipPolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: policyResources},
			MatchConditions: []admissionregistrationv1.MatchCondition{
				{Name: "not-fedmesh", Expression: "request.userInfo.username != " + self},
				// Deletions are the member's own business.
				{Name: "writes", Expression: "request.operation != 'DELETE'"},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!(" + carriesLabel("object") + ") || (request.operation == 'UPDATE' && " + carriesLabel("oldObject") + ")",
				Message:    "only fedmesh's identity in this cluster may set the label " + ManagedByLabel + "=" + ManagedByValue,
				Reason:     forbidden,
			}},
		},
	}
	policies := []*admissionregistrationv1.ValidatingAdmissionPolicy{confine, ownership}
	var bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for _, p := range policies {
		p.TypeMeta = metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"}
		bindings = append(bindings, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: p.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        p.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		})
	}
	return policies, bindings
}
