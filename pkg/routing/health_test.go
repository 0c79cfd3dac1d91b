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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

func TestHealthOf(t *testing.T) {
	now := metav1.Now()
	ready := func(status metav1.ConditionStatus, reason, message string) []metav1.Condition {
		return []metav1.Condition{{Type: "Ready", Status: status, Reason: reason, Message: message}}
	}
	for _, tc := range []struct {
		name       string
		conditions []metav1.Condition
		deleted    bool
		want       Health
	}{
		{name: "ready", conditions: ready(metav1.ConditionTrue, "Ready", "v1.32"), want: Health{Ready: true}},
		{name: "not probed yet", want: Health{Reason: HealthNotProbedYet}},
		{name: "unreachable", conditions: ready(metav1.ConditionFalse, "Unreachable", "dial tcp: refused"),
			want: Health{Reason: "Unreachable", Message: "dial tcp: refused"}},
		{name: "unknown", conditions: ready(metav1.ConditionUnknown, "Probing", ""), want: Health{Reason: "Probing"}},
		{name: "not ready without a reason", conditions: ready(metav1.ConditionFalse, "", ""), want: Health{Reason: HealthNotProbedYet}},
		{name: "ready but being deleted", conditions: ready(metav1.ConditionTrue, "Ready", ""), deleted: true,
			want: Health{Reason: HealthBeingDeleted}},
		{name: "other conditions only", conditions: []metav1.Condition{{Type: "Other", Status: metav1.ConditionTrue}},
			want: Health{Reason: HealthNotProbedYet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
			c.Status.Conditions = tc.conditions
			if tc.deleted {
				c.DeletionTimestamp = &now
			}
			if got := HealthOf(c); got != tc.want {
				t.Errorf("HealthOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
