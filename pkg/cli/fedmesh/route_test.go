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
package fedmesh

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

const (
	k1 = "default/default/default/cluster-1"
	k2 = "default/default/default/cluster-2"
	k3 = "default/default/default/cluster-3"
)

// walkthroughImport is httpbin/httpbin as exported by the clusters named.
func walkthroughImport(exporters ...string) *v1alpha1.ServiceImport {
	si := serviceImport("httpbin", "httpbin", exporters...)
	p := v1alpha1.ServicePort{Port: 8080, Protocol: "TCP"}
	for i, e := range exporters {
		p.Endpoints = append(p.Endpoints, v1alpha1.Endpoint{ClusterKey: "default/default/default/" + e,
			Target: v1alpha1.Target{Host: "127.0.0.1", Port: int32(81 + i), Path: "/" + e + "/httpbin-mesh"}})
		si.Status.Exports = append(si.Status.Exports, v1alpha1.ExportStatus{Cluster: "default/default/default/" + e})
	}
	si.Spec.Ports = []v1alpha1.ServicePort{p}
	return &si
}

func gtp(lb v1alpha1.LoadBalancerType, keys ...string) *v1alpha1.GlobalTrafficPolicy {
	p := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}, Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: lb}}
	for _, k := range keys {
		p.Spec.Targets = append(p.Spec.Targets, v1alpha1.TrafficTarget{ClusterKey: k})
	}
	return p
}

// localHTTPBin is cluster-2's own httpbin: a Service and a slice with one
// ready and one unready endpoint.
func localHTTPBin() *localService {
	return &localService{
		where: "https://127.0.0.1:6443 (context cluster-2)",
		service: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pipy", Port: 8080, Protocol: corev1.ProtocolTCP}}}},
		slices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pipy"), Port: ptr.To[int32](8080)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.0.7"}},
				{Addresses: []string{"10.244.0.8"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			},
		}},
	}
}

func TestComputeRoutes(t *testing.T) {
	clusters := []v1alpha1.Cluster{cluster("cluster-1", 1, "True", "Connected", nil), cluster("cluster-2", 0, "True", "Connected", nil), cluster("cluster-3", 1, "True", "Connected", nil)}
	down := append([]v1alpha1.Cluster(nil), clusters...)
	down[2] = cluster("cluster-3", 1, "False", "Unreachable", nil)
	for _, tc := range []struct {
		name string
		req  routeRequest
		// want is each tier's clusters, of the one port.
		want      [][]string
		wantLocal string
		// wantDecisions are "cluster reason" of every cluster considered.
		wantDecisions []string
		wantNote      string
		wantErr       string
	}{
		{
			name: "no policy, no local endpoints known: cluster-2 does not export, so no route",
			req:  routeRequest{Import: walkthroughImport("cluster-1", "cluster-3")},
			want: [][]string{}, wantLocal: localFromExport,
			wantDecisions: []string{k1 + " NotATarget", k2 + " NoLocalEndpoints", k3 + " NotATarget"},
			wantNote:      k2 + " does not export the service, so it is taken to have no local endpoints",
		},
		{
			name: "FailOver: cluster-1 and cluster-3 share the load",
			req:  routeRequest{Import: walkthroughImport("cluster-1", "cluster-3"), Policy: gtp(v1alpha1.FailOverLbType, k1, k3)},
			want: [][]string{{k1, k3}}, wantLocal: localFromExport,
			wantDecisions: []string{k1 + " Target", k2 + " NoLocalEndpoints", k3 + " Target"},
		},
		{
			name: "FailOver, httpbin in cluster-2, read from the member: local first, its ready endpoint only",
			req:  routeRequest{Import: walkthroughImport("cluster-1", "cluster-3"), Policy: gtp(v1alpha1.FailOverLbType, k1, k3), Local: localHTTPBin()},
			want: [][]string{{k2}, {k1, k3}}, wantLocal: localFromMember,
			wantDecisions: []string{k1 + " Target", k2 + " Local", k3 + " Target"},
			wantNote:      "read from the member at https://127.0.0.1:6443 (context cluster-2): its Service and EndpointSlices",
		},
		{
			name: "ActiveActive, a target not Ready and withdrawn",
			req:  routeRequest{Import: walkthroughImport("cluster-1"), Policy: gtp(v1alpha1.ActiveActiveLbType, k1, k3), Local: localHTTPBin(), Clusters: down},
			want: [][]string{{k2, k1}}, wantLocal: localFromMember,
			wantDecisions: []string{k1 + " Target", k2 + " Local", k3 + " NotReady"},
		},
		{
			name: "ActiveActive, a target not Ready in its grace, which the gateways still route to",
			req:  routeRequest{Import: walkthroughImport("cluster-1", "cluster-3"), Policy: gtp(v1alpha1.ActiveActiveLbType, k1, k3), Local: localHTTPBin(), Clusters: down},
			want: [][]string{{k2, k1, k3}}, wantLocal: localFromMember,
			wantDecisions: []string{k1 + " Target", k2 + " Local", k3 + " Target"},
		},
		{
			name: "no import, the member read: Locality serves from its own Service",
			req:  routeRequest{Local: localHTTPBin()},
			want: [][]string{{k2}}, wantLocal: localFromMember,
			wantDecisions: []string{k2 + " Local"},
		},
		{
			name: "the member has no such Service",
			req:  routeRequest{Import: walkthroughImport("cluster-1"), Local: &localService{where: "there"}},
			want: [][]string{}, wantLocal: localFromMember,
			wantDecisions: []string{k1 + " NotATarget", k2 + " NoLocalEndpoints"},
			wantNote:      "read from the member at there: it has no Service httpbin/httpbin",
		},
		{
			name:    "a port the service does not have",
			req:     routeRequest{Import: walkthroughImport("cluster-1"), Port: 9090},
			wantErr: "httpbin/httpbin has no port 9090 (ports: 8080)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Namespace, tc.req.Name = "httpbin", "httpbin"
			if tc.req.Clusters == nil {
				tc.req.Clusters = clusters
			}
			tc.req.Consumer = &tc.req.Clusters[1]
			view, err := computeRoutes(tc.req)
			if tc.wantErr != "" {
				assert.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, k2, view.Consumer)
			assert.Equal(t, tc.wantLocal, view.LocalEndpoints)
			assert.Contains(t, view.Note, tc.wantNote)
			require.Len(t, view.Routes, 1)
			r := view.Routes[0]
			assert.EqualValues(t, 8080, r.Port)
			got := [][]string{}
			for _, tier := range r.Tiers {
				var keys []string
				for _, d := range tier {
					keys = append(keys, d.Cluster)
					if d.Local {
						assert.Equal(t, []backendOut{{Host: "10.244.0.7", Port: 8080}}, d.Backends, "the ready endpoint only")
					}
				}
				got = append(got, keys)
			}
			assert.Equal(t, tc.want, got)
			var decisions []string
			for _, d := range r.Decisions {
				decisions = append(decisions, d.Cluster+" "+d.Reason)
			}
			assert.Equal(t, tc.wantDecisions, decisions)
		})
	}
}

func TestPrintRoutes(t *testing.T) {
	clusters := []v1alpha1.Cluster{cluster("cluster-1", 1, "True", "Connected", nil), cluster("cluster-2", 0, "True", "Connected", nil),
		cluster("cluster-3", 1, "False", "Unreachable", nil)}
	// A member's administrator words the Ready message of its Cluster.
	clusters[2].Status.Conditions[0].Message = "dial tcp\x1b[2J\tforged\ncluster-3   True"
	view, err := computeRoutes(routeRequest{Namespace: "httpbin", Name: "httpbin", Consumer: &clusters[1], Clusters: clusters,
		Import: walkthroughImport("cluster-1"), Policy: gtp(v1alpha1.FailOverLbType, k1, k3), Local: localHTTPBin()})
	require.NoError(t, err)

	var out bytes.Buffer
	require.NoError(t, printRoutes(&out, view))
	text := out.String()
	for _, want := range []string{
		"Service:           httpbin/httpbin",
		"From:              " + k2,
		"Local endpoints:   read from the member at https://127.0.0.1:6443 (context cluster-2): its Service and EndpointSlices",
		"Port 8080, policy FailOver:",
		"  TIER   CLUSTER                                     WEIGHT   BACKENDS",
		"  0      " + k2 + " (local)   100      10.244.0.7:8080",
		"  1      " + k1 + "           100      127.0.0.1:81/cluster-1/httpbin-mesh",
		"  CLUSTER                             ROUTE    REASON     MESSAGE",
		"  " + k1 + "   tier 1   Target     " + k1 + " is a target of the FailOver policy and exports the service",
		"  " + k2 + "   tier 0   Local      " + k2 + " serves from 1 ready local endpoint(s)",
		"  " + k3 + "   out      NotReady   " + k3 + " is not Ready (Unreachable: dial tcp^[[2J forged cluster-3   True)",
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, "\x1b", "escaped")
	assert.Equal(t, 1, strings.Count(text, "cluster-3   True"), "the message adds no row")

	out.Reset()
	view.Routes[0].Tiers = [][]destinationOut{}
	require.NoError(t, printRoutes(&out, view))
	assert.Contains(t, out.String(), "no route: no cluster can serve this consumer; a request is answered 503")

	for _, format := range []string{"json", "yaml"} {
		out.Reset()
		require.NoError(t, printRoutesAs(&out, format, view))
		assert.NotContains(t, out.String(), "\x1b", format)
		b := out.Bytes()
		if format == "yaml" {
			b, err = yaml.YAMLToJSON(b)
			require.NoError(t, err)
		}
		var back routeView
		require.NoError(t, json.Unmarshal(b, &back), format)
		assert.Equal(t, *view, back, format)
	}
}
