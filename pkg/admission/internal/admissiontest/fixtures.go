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

// Package admissiontest holds what the tests of fedmesh's admission plugins
// share: fixtures, the caches built from them, and admission requests as
// the server makes them.
package admissiontest

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/install"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/protection"
)

var scheme = runtime.NewScheme()

func init() {
	install.Install(scheme)
}

// NewCluster returns a defaulted Cluster in a region, of zone and group
// "default".
func NewCluster(name, region string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterSpec{
			Region: region, Zone: v1alpha1.DefaultKeyPart, Group: v1alpha1.DefaultKeyPart,
			GatewayHost: "127.0.0.1", GatewayPort: 80,
		},
	}
}

// NewPolicy returns a FailOver policy targeting keys.
func NewPolicy(namespace, name string, keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType},
	}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
	}
	return p
}

// ClusterCache returns an informer's cache holding clusters, indexed as the
// plugins index it.
func ClusterCache(clusters ...*v1alpha1.Cluster) cache.Indexer {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, protection.ClusterIndexers())
	for _, c := range clusters {
		if err := indexer.Add(c); err != nil {
			panic(err)
		}
	}
	return indexer
}

// PolicyCache returns an informer's cache holding policies, indexed as the
// plugins index it.
func PolicyCache(policies ...*v1alpha1.GlobalTrafficPolicy) cache.Indexer {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, protection.PolicyIndexers())
	for _, p := range policies {
		if err := indexer.Add(p); err != nil {
			panic(err)
		}
	}
	return indexer
}

// Internal converts a versioned object to the internal type admission sees.
func Internal(obj runtime.Object) runtime.Object {
	if obj == nil {
		return nil
	}
	var out runtime.Object
	switch obj.(type) {
	case *v1alpha1.Cluster:
		out = &flomesh.Cluster{}
	case *v1alpha1.GlobalTrafficPolicy:
		out = &flomesh.GlobalTrafficPolicy{}
	default:
		panic(fmt.Sprintf("no internal type for %T", obj))
	}
	if err := scheme.Convert(obj, out, nil); err != nil {
		panic(err)
	}
	return out
}

// Admin is a user allowed everything.
var Admin = &user.DefaultInfo{Name: "admin", Groups: []string{user.SystemPrivilegedGroup}}

// Request describes an admission request on a Cluster or a policy.
type Request struct {
	Operation   admission.Operation
	Object, Old runtime.Object // versioned; converted for admission
	Subresource string
	DryRun      bool
	User        user.Info
}

// Attributes returns the admission attributes of r, as the server builds
// them: with internal objects.
func (r Request) Attributes() admission.Attributes {
	ref := r.Object
	if ref == nil {
		ref = r.Old
	}
	m := ref.(metav1.Object)
	var kind, resource string
	switch ref.(type) {
	case *v1alpha1.Cluster:
		kind, resource = "Cluster", "clusters"
	case *v1alpha1.GlobalTrafficPolicy:
		kind, resource = "GlobalTrafficPolicy", "globaltrafficpolicies"
	}
	u := r.User
	if u == nil {
		u = Admin
	}
	var opts runtime.Object
	switch r.Operation {
	case admission.Create:
		opts = &metav1.CreateOptions{}
	case admission.Update:
		opts = &metav1.UpdateOptions{}
	case admission.Delete:
		opts = &metav1.DeleteOptions{}
	}
	return admission.NewAttributesRecord(Internal(r.Object), Internal(r.Old),
		v1alpha1.SchemeGroupVersion.WithKind(kind), m.GetNamespace(), m.GetName(),
		v1alpha1.SchemeGroupVersion.WithResource(resource), r.Subresource, r.Operation, opts, r.DryRun, u)
}
