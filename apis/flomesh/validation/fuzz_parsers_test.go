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

package validation

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

// FuzzParseMemberServer checks the parser of a member's server URL, which
// a credentials Secret or a kubeconfig gives: what it accepts is an
// absolute URL of the allowed scheme with a host and nothing else that
// could carry a credential or change where fedmesh connects; parsing what
// it returns gives it again; and a refusal never carries the URL.
func FuzzParseMemberServer(f *testing.F) {
	for _, seed := range []string{
		"https://127.0.0.1:6443", "127.0.0.1:6443", "https://[::1]:6443/", "http://h", "https://u:p@h",
		"https://h/p", "https://h?", "https://h#", "https://h?q=1", "ftp://h", "https://", "//h", "https:h",
		"https://h:99999", "https://h/%2e%2e", "https://h\n", " https://h", "https://%zz",
	} {
		f.Add(seed, uint8(0))
	}
	path := field.NewPath("data").Key("server")
	f.Fuzz(func(t *testing.T, server string, flags uint8) {
		policy := KubeconfigPolicy{AllowPlainHTTP: flags&1 != 0, AllowServerPath: flags&2 != 0}
		got, ferr := ParseMemberServer(server, policy, path)
		if ferr != nil {
			if got != "" {
				t.Fatalf("refused %q yet returned %q", server, got)
			}
			if ferr.Field != path.String() {
				t.Fatalf("error on %s, want %s", ferr.Field, path)
			}
			if ferr.Type == field.ErrorTypeInvalid && ferr.BadValue != (field.OmitValueType{}) {
				t.Fatalf("the refusal carries the URL: %v", ferr)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("accepted %q as %q", server, got)
		}
		if u.Scheme != "https" && (u.Scheme != "http" || !policy.AllowPlainHTTP) {
			t.Fatalf("accepted %q with scheme %q", server, u.Scheme)
		}
		if u.Path != "" && !policy.AllowServerPath {
			t.Fatalf("accepted %q with path %q", server, u.Path)
		}
		if again, ferr := ParseMemberServer(got, policy, path); ferr != nil || again != got {
			t.Fatalf("%q parses to %q, which parses to %q, %v", server, got, again, ferr)
		}
	})
}

// FuzzValidateServiceExportSpec checks the validation of an export's spec,
// which fedmesh-apiserver applies to whatever a member holds: it does not
// panic, changes nothing, gives the same answer twice, points only into
// the spec, and what it accepts the member's gateway can serve: absolute
// paths within the limit that no Ingress refuses, one path per port.
func FuzzValidateServiceExportSpec(f *testing.F) {
	f.Add("/a", int32(8080), "Prefix", "/b", int32(8081), "/a", "/", "*", "RoundRobinLoadBalancer", "default/default/default/c")
	f.Add("/a", int32(8080), "Exact", "/b", int32(8080), "", "", "", "", "")
	f.Add("a", int32(0), "", "//", int32(65536), "^/a", "/b", strings.Repeat("s", 300), "Weird", "not a key")
	f.Add("/a/../b", int32(1), "Prefix", "/%2F", int32(2), "", "", "", "", "")
	f.Add("/a/.", int32(1), "Exact", "/\x00\xff", int32(-1), "", "", "", "", "a/b/c/d/e")
	f.Fuzz(func(t *testing.T, path1 string, port1 int32, pathType, path2 string, port2 int32,
		from, to, serviceAccount, loadBalancer, target string) {
		spec := &flomesh.ServiceExportSpec{
			ServiceAccountName: serviceAccount,
			LoadBalancer:       flomesh.ExportLoadBalancer(loadBalancer),
			Rules: []flomesh.ServiceExportRule{
				{PortNumber: port1, Path: path1, PathType: flomesh.PathType(pathType)},
				{PortNumber: port2, Path: path2, PathType: flomesh.PathTypePrefix},
			},
		}
		if from != "" || to != "" {
			spec.PathRewrite = &flomesh.PathRewrite{From: from, To: to}
		}
		if target != "" {
			spec.TargetClusters = []string{target}
		}
		before := spec.DeepCopy()
		fldPath := field.NewPath("spec")
		errs := ValidateServiceExportSpec(spec, fldPath)
		if !reflect.DeepEqual(before, spec) {
			t.Fatalf("validation changed the spec")
		}
		if again := ValidateServiceExportSpec(spec, fldPath); !reflect.DeepEqual(errs, again) {
			t.Fatalf("two validations differ: %v, %v", errs, again)
		}
		for _, e := range errs {
			if !isUnder(e.Field, fldPath) {
				t.Fatalf("error on %s", e.Field)
			}
		}
		if len(errs) > 0 {
			return
		}
		for _, r := range spec.Rules {
			if !strings.HasPrefix(r.Path, "/") || utf8.RuneCountInString(r.Path) > MaxPathLength {
				t.Fatalf("accepted path %q", r.Path)
			}
			for _, bad := range append(append([]string(nil), invalidPathSequences...), "/../", "%2f") {
				if strings.Contains(r.Path, bad) {
					t.Fatalf("accepted path %q, which an Ingress refuses", r.Path)
				}
			}
			if strings.HasSuffix(r.Path, "/..") || strings.HasSuffix(r.Path, "/.") {
				t.Fatalf("accepted path %q, which an Ingress refuses", r.Path)
			}
			if r.PortNumber < 1 || r.PortNumber > 65535 {
				t.Fatalf("accepted port %d", r.PortNumber)
			}
		}
		if port1 == port2 && path1 != path2 {
			t.Fatalf("accepted port %d at two paths", port1)
		}
		if target != "" {
			if _, _, _, _, err := ParseClusterKey(target); err != nil {
				t.Fatalf("accepted target cluster %q: %v", target, err)
			}
		}
	})
}
