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

package syncer

// The desired objects are computed as typed objects, which compare easily
// with the cached live ones; these functions turn them into the apply
// configurations that are sent. An apply configuration names exactly the
// fields the syncer owns, so server-side apply removes a field the syncer
// stops setting and never touches the fields of other managers.

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	fedac "github.com/fedmesh/fedmesh/generated/applyconfiguration/flomesh/v1alpha1"
)

func importApplyConfig(si *v1alpha1.ServiceImport) *fedac.ServiceImportApplyConfiguration {
	spec := fedac.ServiceImportSpec().
		WithIPs(si.Spec.IPs...).
		WithType(si.Spec.Type).
		WithServiceAccountName(si.Spec.ServiceAccountName)
	if si.Spec.SessionAffinity != "" {
		spec.WithSessionAffinity(si.Spec.SessionAffinity)
	}
	if c := si.Spec.SessionAffinityConfig; c != nil {
		cfg := fedac.SessionAffinityConfig()
		if c.ClientIP != nil {
			ip := fedac.ClientIPConfig()
			if c.ClientIP.TimeoutSeconds != nil {
				ip.WithTimeoutSeconds(*c.ClientIP.TimeoutSeconds)
			}
			cfg.WithClientIP(ip)
		}
		spec.WithSessionAffinityConfig(cfg)
	}
	for _, p := range si.Spec.Ports {
		port := fedac.ServicePort().WithPort(p.Port)
		if p.Name != "" {
			port.WithName(p.Name)
		}
		if p.Protocol != "" {
			port.WithProtocol(p.Protocol)
		}
		if p.AppProtocol != nil {
			port.WithAppProtocol(*p.AppProtocol)
		}
		for _, e := range p.Endpoints {
			port.WithEndpoints(fedac.Endpoint().WithClusterKey(e.ClusterKey).WithTarget(
				fedac.Target().WithHost(e.Target.Host).WithIP(e.Target.IP).WithPort(e.Target.Port).WithPath(e.Target.Path)))
		}
		spec.WithPorts(port)
	}
	return fedac.ServiceImport(si.Name, si.Namespace).WithLabels(si.Labels).WithSpec(spec)
}

func policyApplyConfig(gtp *v1alpha1.GlobalTrafficPolicy) *fedac.GlobalTrafficPolicyApplyConfiguration {
	spec := fedac.GlobalTrafficPolicySpec()
	if gtp.Spec.LbType != "" {
		spec.WithLbType(gtp.Spec.LbType)
	}
	for _, t := range gtp.Spec.Targets {
		target := fedac.TrafficTarget().WithClusterKey(t.ClusterKey)
		if t.Weight != nil {
			target.WithWeight(*t.Weight)
		}
		spec.WithTargets(target)
	}
	return fedac.GlobalTrafficPolicy(gtp.Name, gtp.Namespace).WithLabels(gtp.Labels).WithSpec(spec)
}

func ingressApplyConfig(ing *networkingv1.Ingress) *networkingv1ac.IngressApplyConfiguration {
	spec := networkingv1ac.IngressSpec()
	if ing.Spec.IngressClassName != nil {
		spec.WithIngressClassName(*ing.Spec.IngressClassName)
	}
	for _, r := range ing.Spec.Rules {
		rule := networkingv1ac.IngressRule()
		if r.Host != "" {
			rule.WithHost(r.Host)
		}
		if r.HTTP != nil {
			http := networkingv1ac.HTTPIngressRuleValue()
			for _, p := range r.HTTP.Paths {
				path := networkingv1ac.HTTPIngressPath().WithPath(p.Path)
				if p.PathType != nil {
					path.WithPathType(*p.PathType)
				}
				if s := p.Backend.Service; s != nil {
					port := networkingv1ac.ServiceBackendPort()
					if s.Port.Name != "" {
						port.WithName(s.Port.Name)
					} else {
						port.WithNumber(s.Port.Number)
					}
					path.WithBackend(networkingv1ac.IngressBackend().WithService(
						networkingv1ac.IngressServiceBackend().WithName(s.Name).WithPort(port)))
				}
				http.WithPaths(path)
			}
			rule.WithHTTP(http)
		}
		spec.WithRules(rule)
	}
	// Server-side apply removes an annotation the syncer applied before
	// and no longer applies.
	return networkingv1ac.Ingress(ing.Name, ing.Namespace).WithLabels(ing.Labels).
		WithAnnotations(ing.Annotations).WithSpec(spec)
}

func exportStatusApplyConfig(namespace, name string, conds []metav1.Condition) *fedac.ServiceExportApplyConfiguration {
	status := fedac.ServiceExportStatus()
	for _, c := range conds {
		status.WithConditions(metav1ac.Condition().
			WithType(c.Type).WithStatus(c.Status).WithObservedGeneration(c.ObservedGeneration).
			WithLastTransitionTime(c.LastTransitionTime).WithReason(c.Reason).WithMessage(c.Message))
	}
	return fedac.ServiceExport(name, namespace).WithStatus(status)
}
