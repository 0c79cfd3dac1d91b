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
package gateway

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	fedfake "github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
)

// TestWatcher: the watcher computes a table once its caches have synced,
// and a new one after a change.
func TestWatcher(t *testing.T) {
	kube := fake.NewClientset(service("httpbin", "httpbin", 8080), endpointSlice("httpbin", "httpbin", 8080, "10.0.2.5"))
	fed := fedfake.NewSimpleClientset(serviceImport("httpbin", "httpbin", walkthroughTargets))
	tables := make(chan *Table, 10)
	w := NewWatcher(kube, fed, BuildOptions{Cluster: c2, IngressClass: "pipy"}, 0, func(t *Table) { tables <- t })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !w.Start(ctx) {
		t.Fatal("Start reports its caches did not sync")
	}
	next := func() *Table {
		select {
		case tb := <-tables:
			return tb
		case <-time.After(10 * time.Second):
			t.Fatal("no table computed")
			return nil
		}
	}
	tb := next()
	if r := tb.egress[ServiceKey{"httpbin", "httpbin"}].ports[8080]; tiers(r) != "local" {
		t.Fatalf("first table: %s, want the local endpoints (Locality)", tiers(r))
	}
	_, err := fed.FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Create(ctx, gtp("httpbin", "httpbin", v1alpha1.FailOverLbType, c1, c3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		tb = next()
		if tiers(tb.egress[ServiceKey{"httpbin", "httpbin"}].ports[8080]) == "local | cluster-1,cluster-3" {
			break
		}
	}
}
