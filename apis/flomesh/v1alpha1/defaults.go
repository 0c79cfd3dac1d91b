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
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// DefaultKeyPart is the default region, zone and group of a cluster.
const DefaultKeyPart = "default"

// DefaultGatewayPort is the default port of a cluster's gateway.
const DefaultGatewayPort = 80

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_ClusterSpec fills in the parts of the cluster key and the gateway port.
func SetDefaults_ClusterSpec(obj *ClusterSpec) {
	if obj.Region == "" {
		obj.Region = DefaultKeyPart
	}
	if obj.Zone == "" {
		obj.Zone = DefaultKeyPart
	}
	if obj.Group == "" {
		obj.Group = DefaultKeyPart
	}
	if obj.GatewayPort == 0 {
		obj.GatewayPort = DefaultGatewayPort
	}
}

// SetDefaults_GlobalTrafficPolicySpec makes Locality the default routing.
func SetDefaults_GlobalTrafficPolicySpec(obj *GlobalTrafficPolicySpec) {
	if obj.LbType == "" {
		obj.LbType = LocalityLbType
	}
}

// SetDefaults_ServiceImportSpec makes ClusterSetIP the default import type.
func SetDefaults_ServiceImportSpec(obj *ServiceImportSpec) {
	if obj.Type == "" {
		obj.Type = ClusterSetIP
	}
}

// SetDefaults_ServiceExportSpec makes round robin the default balancer and
// Prefix the default path match.
func SetDefaults_ServiceExportSpec(obj *ServiceExportSpec) {
	if obj.LoadBalancer == "" {
		obj.LoadBalancer = RoundRobinLoadBalancer
	}
	for i := range obj.Rules {
		if obj.Rules[i].PathType == "" {
			obj.Rules[i].PathType = PathTypePrefix
		}
	}
}
