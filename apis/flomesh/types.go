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
package flomesh

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Cluster is a member of the federation. Its key, region/zone/group/name, is
// how policies and imports refer to it.
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterSpec   `json:"spec,omitempty"`
	Status ClusterStatus `json:"status,omitempty"`
}

// ClusterSpec says where a member cluster is and how to reach it.
type ClusterSpec struct {
	// Region of the cluster; part of its key. Defaults to "default".
	// +optional
	Region string `json:"region,omitempty"`
	// Zone of the cluster; part of its key. Defaults to "default".
	// +optional
	Zone string `json:"zone,omitempty"`
	// Group of the cluster; part of its key. Defaults to "default".
	// +optional
	Group string `json:"group,omitempty"`
	// GatewayHost is the address (IP or DNS name) at which the cluster's
	// ingress gateway is reachable from the other members.
	GatewayHost string `json:"gatewayHost,omitempty"`
	// GatewayPort is the port of the cluster's ingress gateway. Defaults to 80.
	// +optional
	GatewayPort int32 `json:"gatewayPort,omitempty"`
	// Kubeconfig is the kubeconfig fedmesh uses to reach the member's API
	// server, inline. It is a credential, so whoever may read Clusters may
	// read it: prefer credentialsSecretRef. Only its data is used: a
	// server URL, a CA, a TLS server name, a bearer token or a client
	// certificate and key; exec plugins, auth providers, file paths,
	// basic auth and impersonation are refused. It is never shown in
	// table output. Exactly one of kubeconfig and credentialsSecretRef is
	// set.
	// +optional
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// CredentialsSecretRef names the Secret that holds the member's
	// credentials, in the namespace fedmesh keeps them in (fedmesh-members
	// by default), which only fedmesh reads: the keys "server" (the https
	// URL of the member's API), "ca.crt" (PEM) and "token". kubectl
	// fedmesh join writes it.
	// +optional
	CredentialsSecretRef *CredentialsSecretReference `json:"credentialsSecretRef,omitempty"`
}

// CredentialsSecretReference names a Secret in fedmesh's namespace of
// member credentials.
type CredentialsSecretReference struct {
	// Name of the Secret.
	Name string `json:"name"`
}

// ClusterStatus is what fedmesh observed of a member cluster.
type ClusterStatus struct {
	// Conditions of the member, such as Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ClusterKey is region/zone/group/name.
	// +optional
	ClusterKey string `json:"clusterKey,omitempty"`
	// KubernetesVersion is the version the member's API server reports.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// ExportCount is the number of ServiceExports in the member.
	// +optional
	ExportCount int32 `json:"exportCount,omitempty"`
	// LastHeartbeatTime is the last time fedmesh heard from the member.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Cluster `json:"items"`
}

// LoadBalancerType is how consumers spread traffic over the clusters that
// serve a service.
// +enum
type LoadBalancerType string

const (
	// LocalityLbType routes to the local cluster only. It is the default.
	LocalityLbType LoadBalancerType = "Locality"
	// FailOverLbType routes to remote targets only when the local service is
	// absent or failing.
	FailOverLbType LoadBalancerType = "FailOver"
	// ActiveActiveLbType shares load between local and remote targets, by weight.
	ActiveActiveLbType LoadBalancerType = "ActiveActive"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GlobalTrafficPolicy sets how consumers of the service of the same
// namespace and name route across clusters.
type GlobalTrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GlobalTrafficPolicySpec   `json:"spec,omitempty"`
	Status GlobalTrafficPolicyStatus `json:"status,omitempty"`
}

// GlobalTrafficPolicySpec is the routing policy of one service.
type GlobalTrafficPolicySpec struct {
	// LbType is Locality (default), FailOver or ActiveActive.
	// +optional
	LbType LoadBalancerType `json:"lbType,omitempty"`
	// Targets are the clusters traffic may go to. FailOver needs at least
	// one; Locality takes none; ActiveActive with none means every
	// exporting cluster. At most 100 (validation.MaxPolicyTargets).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Targets []TrafficTarget `json:"targets,omitempty"`
	// UnavailableGraceSeconds is how long fedmesh keeps serving a member's
	// endpoints of this service after the member stops being Ready, in
	// seconds, from 0 to 86400 (a day). Unset means fedmesh-apiserver's
	// --member-unavailable-grace (30 s by default).
	//
	// It is a trade-off between two failures. A short grace (0 withdraws at
	// once, as Submariner's Lighthouse does) stops consumers sending traffic
	// to a member that is really down, but a control plane that merely
	// lost sight of a healthy member (a partition between fedmesh and the
	// member, a restarting kube-apiserver) withdraws endpoints that still
	// work, and every consumer's routes change twice. A long grace (as
	// Karmada keeps endpoints while a cluster is NotReady) rides out such
	// blips, but a member that really died keeps receiving the traffic
	// its routes send it until the grace runs out, unless the data plane
	// fails over on its own.
	// +optional
	UnavailableGraceSeconds *int32 `json:"unavailableGraceSeconds,omitempty"`
}

// TrafficTarget is one cluster a policy may route to.
type TrafficTarget struct {
	// ClusterKey is region/zone/group/name of the target cluster.
	ClusterKey string `json:"clusterKey"`
	// Weight is the target's share of traffic under ActiveActive.
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// GlobalTrafficPolicyStatus is what fedmesh observed of a policy.
type GlobalTrafficPolicyStatus struct {
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Targets tells, per target, whether it resolves.
	// +optional
	// +listType=map
	// +listMapKey=clusterKey
	Targets []TargetStatus `json:"targets,omitempty"`
	// Consumers tells, per member and port of the service, where that
	// member's requests go under this policy, as pkg/routing decides it
	// from what the control plane sees.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	// +listMapKey=port
	Consumers []ConsumerRoute `json:"consumers,omitempty"`
}

// ConsumerRoute is where one member's requests for one port of the policy's
// service go.
type ConsumerRoute struct {
	// Cluster is the key of the consumer member.
	Cluster string `json:"cluster"`
	// Port is the port of the service.
	Port int32 `json:"port"`
	// Tiers are the route's tiers in order of preference.
	// +optional
	// +listType=atomic
	Tiers []RouteTier `json:"tiers,omitempty"`
	// Message names the clusters left out of the route, with their reasons.
	// +optional
	Message string `json:"message,omitempty"`
}

// RouteTier is a set of clusters that share a consumer's load by weight.
type RouteTier struct {
	// +listType=atomic
	Destinations []RouteDestination `json:"destinations"`
}

// RouteDestination is one cluster of a tier.
type RouteDestination struct {
	// Cluster is the key of the serving cluster.
	Cluster string `json:"cluster"`
	// Weight is the cluster's share of its tier.
	Weight int32 `json:"weight"`
}

// TargetStatus is the state of one policy target.
type TargetStatus struct {
	// ClusterKey of the target.
	ClusterKey string `json:"clusterKey"`
	// Known is true when a registered Cluster has this key.
	// +optional
	Known bool `json:"known,omitempty"`
	// Ready is true when that Cluster is Ready.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// Exported is true when that Cluster exports the policy's service.
	// +optional
	Exported bool `json:"exported,omitempty"`
	// Message explains a target that does not resolve.
	// +optional
	Message string `json:"message,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GlobalTrafficPolicyList is a list of GlobalTrafficPolicies.
type GlobalTrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []GlobalTrafficPolicy `json:"items"`
}

// ServiceImportType is the kind of a ServiceImport.
// +enum
type ServiceImportType string

const (
	// ClusterSetIP imports are reached through a virtual IP. It is the default.
	ClusterSetIP ServiceImportType = "ClusterSetIP"
	// Headless imports are reached through their endpoints directly.
	Headless ServiceImportType = "Headless"
)

// Protocol is a network protocol of a port (TCP, UDP or SCTP).
type Protocol string

// ServiceAffinity is the session affinity of a service (None or ClientIP).
type ServiceAffinity string

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServiceImport is a service as the federation sees it: the union of the
// ServiceExports of the same namespace and name in the member clusters. On
// the control plane it is computed, never stored.
type ServiceImport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceImportSpec   `json:"spec,omitempty"`
	Status ServiceImportStatus `json:"status,omitempty"`
}

// ServiceImportSpec describes an imported service.
type ServiceImportSpec struct {
	// +listType=atomic
	Ports []ServicePort `json:"ports"`
	// IPs are the virtual IPs of the import, when it has any.
	// +optional
	// +listType=atomic
	IPs []string `json:"ips,omitempty"`
	// Type is ClusterSetIP (default) or Headless.
	// +optional
	Type ServiceImportType `json:"type,omitempty"`
	// +optional
	SessionAffinity ServiceAffinity `json:"sessionAffinity,omitempty"`
	// +optional
	SessionAffinityConfig *SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
	// ServiceAccountName the exporters allow to call the service ("*" is any).
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// SessionAffinityConfig holds the session affinity settings of an import.
type SessionAffinityConfig struct {
	// +optional
	ClientIP *ClientIPConfig `json:"clientIP,omitempty"`
}

// ClientIPConfig holds the settings of ClientIP session affinity.
type ClientIPConfig struct {
	// TimeoutSeconds is how long a sticky session lasts.
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// ServicePort is one port of an imported service and where it is served.
type ServicePort struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`
	// +optional
	AppProtocol *string `json:"appProtocol,omitempty"`
	Port        int32   `json:"port"`
	// Endpoints are the exporting clusters' gateways serving this port.
	// +optional
	// +listType=atomic
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one exporting cluster's way in to a port.
type Endpoint struct {
	ClusterKey string `json:"clusterKey"`
	Target     Target `json:"target"`
}

// Target is a gateway address and path serving an exported port.
type Target struct {
	Host string `json:"host"`
	IP   string `json:"ip"`
	Port int32  `json:"port"`
	Path string `json:"path"`
}

// ServiceImportStatus lists the clusters that export the service, and the
// state of each cluster's export.
type ServiceImportStatus struct {
	// Clusters are the clusters whose valid exports serve the import.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Clusters []SourceStatus `json:"clusters,omitempty"`
	// Exports lists every cluster's ServiceExport of this service, valid or
	// not, with the generation fedmesh judged and, for an export that is not
	// valid or is in conflict, its Valid and Conflict conditions. The syncer
	// writes them back onto the members' ServiceExports.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Exports []ExportStatus `json:"exports,omitempty"`
}

// ExportStatus is the computed state of one cluster's export of a service.
type ExportStatus struct {
	// Cluster is the key of the exporting cluster.
	Cluster string `json:"cluster"`
	// ObservedGeneration is the generation of the ServiceExport that was
	// judged.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// TargetClusters is the export's audience, its spec.targetClusters:
	// the keys of the clusters it is exported to; empty for every
	// cluster. fedmesh-syncer writes the cluster's endpoints only into
	// these.
	// +optional
	// +listType=atomic
	TargetClusters []string `json:"targetClusters,omitempty"`
	// Conditions are the Valid and Conflict conditions of KEP-1645, listed
	// only when the export is not valid or is in conflict. An export without
	// conditions is Valid=True and Conflict=False: spelling that out for
	// every healthy export would double the size of every import, and the
	// syncer writes the explicit conditions onto the member's ServiceExport.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SourceStatus names one exporting cluster.
type SourceStatus struct {
	// Cluster is the key of the exporting cluster.
	Cluster string `json:"cluster"`
	// Addresses are where that cluster serves the import.
	// +optional
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServiceImportList is a list of ServiceImports.
type ServiceImportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ServiceImport `json:"items"`
}

// PathType is how an export rule's path matches (Exact or Prefix).
// +enum
type PathType string

const (
	PathTypeExact  PathType = "Exact"
	PathTypePrefix PathType = "Prefix"
)

// ExportLoadBalancer is the algorithm the gateway uses for an export.
// +enum
type ExportLoadBalancer string

const (
	RoundRobinLoadBalancer ExportLoadBalancer = "RoundRobinLoadBalancer"
	HashingLoadBalancer    ExportLoadBalancer = "HashingLoadBalancer"
	LeastWorkLoadBalancer  ExportLoadBalancer = "LeastWorkLoadBalancer"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServiceExport, in a member cluster, exports the Service of the same
// namespace and name to the federation.
type ServiceExport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceExportSpec   `json:"spec,omitempty"`
	Status ServiceExportStatus `json:"status,omitempty"`
}

// ServiceExportSpec says how a Service is exposed to the other members.
type ServiceExportSpec struct {
	// ServiceAccountName allowed to call the service ("*" is any).
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Rules expose ports of the Service at paths of the cluster's gateway.
	// +optional
	// +listType=atomic
	Rules []ServiceExportRule `json:"rules,omitempty"`
	// LoadBalancer is the gateway's algorithm. Defaults to RoundRobinLoadBalancer.
	// +optional
	LoadBalancer ExportLoadBalancer `json:"loadBalancer,omitempty"`
	// +optional
	SessionSticky bool `json:"sessionSticky,omitempty"`
	// +optional
	PathRewrite *PathRewrite `json:"pathRewrite,omitempty"`
	// TargetClusters, when set, limits the export to these cluster keys.
	// +optional
	// +listType=atomic
	TargetClusters []string `json:"targetClusters,omitempty"`
}

// ServiceExportRule exposes one port of the Service at a path.
type ServiceExportRule struct {
	PortNumber int32 `json:"portNumber"`
	// +optional
	Path string `json:"path,omitempty"`
	// +optional
	PathType PathType `json:"pathType,omitempty"`
}

// PathRewrite rewrites the request path on its way to the Service.
type PathRewrite struct {
	// +optional
	From string `json:"from,omitempty"`
	// +optional
	To string `json:"to,omitempty"`
}

// ServiceExportStatus holds the Valid and Conflict conditions of an export.
type ServiceExportStatus struct {
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServiceExportList is a list of ServiceExports.
type ServiceExportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ServiceExport `json:"items"`
}
