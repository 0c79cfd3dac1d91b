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
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParseServiceHost feeds the egress listener's parser of a request's
// host, which any client of the proxy writes. Whatever it accepts names a
// Service as the API would (a DNS-1035 name, a DNS-1123 namespace) and a
// port from 1 to 65535, and reads back the same from its canonical form.
// Its label check agrees with apimachinery's on any string.
func FuzzParseServiceHost(f *testing.F) {
	for _, h := range []string{
		"httpbin.httpbin:8080", "httpbin.httpbin", "httpbin.httpbin.svc", "httpbin.httpbin.svc.cluster.local:8080",
		"HTTPBIN.httpbin.svc.cluster.local.", "[::1]:80", "a.b.c", "a.b:0", "a.b:65536", "a.b:99999999999999999999",
		"example.com", ":80", "", "a..b", "1a.b", "a.b:+80", "a.b:８０",
		"a-", "-a", "a-1", "1-a", "a_b", strings.Repeat("a", 63), strings.Repeat("a", 64),
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if got, want := isDNSLabel(host, true), len(validation.IsDNS1035Label(host)) == 0; got != want {
			t.Fatalf("%q: DNS-1035 label %v, apimachinery says %v", host, got, want)
		}
		if got, want := isDNSLabel(host, false), len(validation.IsDNS1123Label(host)) == 0; got != want {
			t.Fatalf("%q: DNS-1123 label %v, apimachinery says %v", host, got, want)
		}
		key, port, err := parseServiceHost(host, "cluster.local")
		if err != nil {
			return
		}
		if errs := validation.IsDNS1035Label(key.Name); len(errs) > 0 {
			t.Fatalf("%q: accepted name %q: %v", host, key.Name, errs)
		}
		if errs := validation.IsDNS1123Label(key.Namespace); len(errs) > 0 {
			t.Fatalf("%q: accepted namespace %q: %v", host, key.Namespace, errs)
		}
		if port < 1 || port > 65535 {
			t.Fatalf("%q: accepted port %d", host, port)
		}
		canonical := fmt.Sprintf("%s.%s.svc.cluster.local:%d", key.Name, key.Namespace, port)
		key2, port2, err := parseServiceHost(canonical, "cluster.local")
		if err != nil || key2 != key || port2 != port {
			t.Fatalf("%q → %q reads back as %v %d %v", host, canonical, key2, port2, err)
		}
	})
}

// FuzzRewritePrefix feeds the ingress listener's pathRewrite with any
// request path and rule: the path it sends on is always absolute, and a
// path that does not start with the rule's From is sent unchanged.
func FuzzRewritePrefix(f *testing.F) {
	for _, c := range [][3]string{
		{"/cluster-1/httpbin-mesh/get", "/cluster-1/httpbin-mesh", "/"},
		{"/cluster-1/httpbin-mesh", "/cluster-1/httpbin-mesh", ""},
		{"/a/b", "/a", "b"},
		{"/other", "/a", "/"},
		{"", "", ""},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, path, from, to string) {
		if !strings.HasPrefix(path, "/") {
			return // the HTTP server gives handlers absolute paths only
		}
		out := rewritePrefix(path, from, to)
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("rewritePrefix(%q, %q, %q) = %q, not absolute", path, from, to, out)
		}
		if !strings.HasPrefix(path, from) && out != path {
			t.Fatalf("rewritePrefix(%q, %q, %q) = %q, but From does not match", path, from, to, out)
		}
	})
}
