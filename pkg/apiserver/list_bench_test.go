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

package apiserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

// BenchmarkListServiceImports lists 10,000 imports shaped as the
// federation computes them, served by the in-process server, to profile
// the server's side of a LIST (make bench measures it next to its peer).
func BenchmarkListServiceImports(b *testing.B) {
	const n = 10000
	ns := "bench-list"
	created := metav1.NewTime(time.Unix(1700000000, 0))
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: "TCP", TargetPort: intstr.FromInt32(8080)}}}}
		exp := &v1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: created},
			Spec: v1alpha1.ServiceExportSpec{ServiceAccountName: "*", Rules: []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/" + name, PathType: "Prefix"}}}}
		imp := imports.Compute(imports.Namespaces{}, ns, name, []imports.Export{{
			Cluster: imports.Cluster{Name: "member-1", Key: "default/default/default/member-1", GatewayHost: "127.0.0.1", GatewayIP: "127.0.0.1", GatewayPort: 81},
			Export:  imports.ExportOf(exp), Service: imports.ServiceOf(svc),
		}})
		testImports.Set(imp, imports.Equal)
	}
	raw, err := rest.UnversionedRESTClientFor(withNegotiation(adminConfig))
	if err != nil {
		b.Fatal(err)
	}
	client := newClientB(b)
	b.Run("typed", func(b *testing.B) {
		for b.Loop() {
			l, err := client.FlomeshV1alpha1().ServiceImports(ns).List(context.Background(), metav1.ListOptions{})
			if err != nil || len(l.Items) != n {
				b.Fatalf("listed %d: %v", len(l.Items), err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			body, err := raw.Get().AbsPath("/apis/flomesh.io/v1alpha1/namespaces/" + ns + "/serviceimports").Do(context.Background()).Raw()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
		}
	})
}
