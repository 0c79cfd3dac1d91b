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

package routing

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// The reasons HealthOf gives a cluster whose Ready condition does not say.
const (
	// HealthBeingDeleted: the Cluster is being deleted.
	HealthBeingDeleted = "BeingDeleted"
	// HealthNotProbedYet: fedmesh-apiserver has not written the Cluster's
	// Ready condition yet.
	HealthNotProbedYet = "NotProbedYet"
)

// HealthOf is the health of a cluster as its Cluster object tells: Ready
// when its Ready condition is True and it is not being deleted, otherwise
// why not. Message is the condition's, which may quote what the member
// said: a caller that writes it into status, which never echoes a member,
// drops it; one that prints it escapes it.
func HealthOf(c *v1alpha1.Cluster) Health {
	cond := meta.FindStatusCondition(c.Status.Conditions, "Ready")
	switch {
	case c.DeletionTimestamp != nil:
		return Health{Reason: HealthBeingDeleted}
	case cond == nil || cond.Reason == "" && cond.Status != metav1.ConditionTrue:
		return Health{Reason: HealthNotProbedYet}
	case cond.Status != metav1.ConditionTrue:
		return Health{Reason: cond.Reason, Message: cond.Message}
	}
	return Health{Ready: true}
}
