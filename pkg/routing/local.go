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
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// LocalBackends returns the ready endpoints of port of the Service svc
// that its EndpointSlices list, as kube-proxy would pick them: the slices'
// port of the same name as the Service's port (and protocol TCP), and the
// endpoints whose ready condition is not false. The caller gives the
// slices of svc (label kubernetes.io/service-name); LocalBackends checks
// the label again, so a slice of another Service is never used.
//
// Only IP addresses are used. An FQDN endpoint would make the gateway
// resolve a name that an object chose, and an address that is loopback,
// link-local, multicast or unspecified is not one a Pod can have
// (EndpointSlice validation refuses most of them; a slice written before
// that, or by a member's own controller, is still input).
func LocalBackends(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, port int32) []Backend {
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if p := &svc.Spec.Ports[i]; p.Port == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			sp = p
			break
		}
	}
	if sp == nil {
		return nil
	}
	seen := map[Backend]bool{}
	var out []Backend
	for _, s := range endpointSlices {
		if s == nil || s.Namespace != svc.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Name {
			continue
		}
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var number int32
		for _, p := range s.Ports {
			if p.Port != nil && ptrOr(p.Name, "") == sp.Name && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				number = *p.Port
				break
			}
		}
		if number < 1 || number > 65535 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || ip.Zone() != "" || !ip.IsGlobalUnicast() {
					continue
				}
				b := Backend{Host: ip.Unmap().String(), Port: number}
				if !seen[b] {
					seen[b] = true
					out = append(out, b)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Backend) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
