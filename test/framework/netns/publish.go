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

package netns

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by label of the
// EndpointSlices Publish writes, so that no controller of the member takes
// them for its own.
const ManagedBy = "fedmesh-test"

// SliceName is the name of the EndpointSlice Publish writes for a Service.
func SliceName(service string) string { return service + "-fedmesh-backends" }

// Publish makes backends reachable in a member as Kubernetes reaches Pods:
// the Service namespace/name with port, made without a selector when it
// does not exist (one that exists, as the walkthrough's httpbin.yaml makes
// it, is left as it is), and an EndpointSlice of that Service holding the
// backends' addresses, ready. The namespace is made when missing. Publish
// again replaces the addresses; no address is Unpublish.
//
// Every address must share one port, the Service port's target.
func Publish(ctx context.Context, client kubernetes.Interface, namespace, name string, port int32, backends ...netip.AddrPort) error {
	if len(backends) == 0 {
		return Unpublish(ctx, client, namespace, name)
	}
	target := backends[0].Port()
	for _, b := range backends {
		if b.Port() != target {
			return fmt.Errorf("backends of %s/%s listen on different ports: %d and %d", namespace, name, target, b.Port())
		}
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc, err := client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc, err = client.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Port: port, TargetPort: intstr.FromInt32(int32(target)), Protocol: corev1.ProtocolTCP,
			}}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	// The slice's port takes the name of the Service's port, as the
	// EndpointSlice controller names it, or kube-proxy (and fedmesh-gateway)
	// would not match them.
	portName := ""
	found := false
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			portName, found = p.Name, true
			break
		}
	}
	if !found {
		return fmt.Errorf("service %s/%s has no port %d", namespace, name, port)
	}
	addressType := discoveryv1.AddressTypeIPv4
	var endpoints []discoveryv1.Endpoint
	for _, b := range backends {
		if b.Addr().Is6() {
			addressType = discoveryv1.AddressTypeIPv6
		}
		endpoints = append(endpoints, discoveryv1.Endpoint{
			Addresses:  []string{b.Addr().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		})
	}
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SliceName(name),
			Namespace: namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
		},
		AddressType: addressType,
		Endpoints:   endpoints,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr.To(portName), Port: ptr.To(int32(target)), Protocol: ptr.To(corev1.ProtocolTCP),
		}},
	}
	slices := client.DiscoveryV1().EndpointSlices(namespace)
	cur, err := slices.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, want, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	want.ResourceVersion = cur.ResourceVersion
	_, err = slices.Update(ctx, want, metav1.UpdateOptions{})
	return err
}

// Unpublish deletes the EndpointSlice Publish wrote for namespace/name; the
// Service stays.
func Unpublish(ctx context.Context, client kubernetes.Interface, namespace, name string) error {
	err := client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, SliceName(name), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
