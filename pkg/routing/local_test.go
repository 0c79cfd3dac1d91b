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

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestLocalBackends(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	slice := func(name string, at discoveryv1.AddressType, port string, number int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "httpbin", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
			AddressType: at,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To(number), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   eps,
		}
	}
	ep := func(ready *bool, addrs ...string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	other := slice("other", discoveryv1.AddressTypeIPv4, "http", 8080, ep(nil, "10.0.0.9"))
	other.Labels[discoveryv1.LabelServiceName] = "someone-else"

	for _, tc := range []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		port   int32
		want   []Backend
	}{
		{name: "no Service", svc: nil, port: 8080},
		{name: "no such port", svc: svc, port: 9090, slices: []*discoveryv1.EndpointSlice{slice("a", discoveryv1.AddressTypeIPv4, "http", 80, ep(nil, "10.0.0.2"))}},
		{name: "a UDP port is not served", svc: svc, port: 53, slices: []*discoveryv1.EndpointSlice{slice("a", discoveryv1.AddressTypeIPv4, "dns", 53, ep(nil, "10.0.0.2"))}},
		{
			name: "ready and unknown endpoints, by target port, sorted and once each",
			svc:  svc, port: 8080,
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, "http", 80, ep(ptr.To(true), "10.0.0.3"), ep(nil, "10.0.0.2"), ep(ptr.To(false), "10.0.0.4")),
				slice("b", discoveryv1.AddressTypeIPv4, "http", 80, ep(nil, "10.0.0.2")),
			},
			want: []Backend{{Host: "10.0.0.2", Port: 80}, {Host: "10.0.0.3", Port: 80}},
		},
		{
			name: "another Service's slice, a port of another name, FQDNs and addresses no Pod has are skipped",
			svc:  svc, port: 8080,
			slices: []*discoveryv1.EndpointSlice{
				other,
				slice("b", discoveryv1.AddressTypeIPv4, "metrics", 80, ep(nil, "10.0.0.5")),
				slice("c", discoveryv1.AddressTypeFQDN, "http", 80, ep(nil, "example.com")),
				slice("d", discoveryv1.AddressTypeIPv4, "http", 80, ep(nil, "127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "not-an-ip", "198.18.0.2")),
			},
			want: []Backend{{Host: "198.18.0.2", Port: 80}},
		},
		{
			name: "IPv6",
			svc:  svc, port: 8080,
			slices: []*discoveryv1.EndpointSlice{slice("a", discoveryv1.AddressTypeIPv6, "http", 80, ep(nil, "fd00::2", "::1"))},
			want:   []Backend{{Host: "fd00::2", Port: 80}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, LocalBackends(tc.svc, tc.slices, tc.port))
		})
	}
}
