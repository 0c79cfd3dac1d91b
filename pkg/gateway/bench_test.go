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
	"io"
	"net/http"
	"testing"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

// BenchmarkEgress is one request through the egress to a local endpoint,
// with client, gateway and backend in this process: a quick measure of
// the gateway's allocations and CPU beside what net/http costs on both
// sides of it. make bench measures the gateway as it runs, on its own.
func BenchmarkEgress(b *testing.B) {
	local := newBackend(b, "cluster-2")
	g := testGateway()
	g.SetTable(egressTable(b, []string{local.Listener.Addr().String()}, nil,
		&v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.LocalityLbType}))
	c := newEgress(b, g)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get("http://httpbin.httpbin:8080/get")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}

// BenchmarkParseServiceHost is the egress listener's reading of the host
// of each request.
func BenchmarkParseServiceHost(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseServiceHost("httpbin.httpbin.svc.cluster.local:8080", "cluster.local"); err != nil {
			b.Fatal(err)
		}
	}
}
