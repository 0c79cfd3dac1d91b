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
	"net/url"
	"testing"
)

// FuzzValidServer feeds the check of --member-server: whatever it accepts
// parses as a URL with a scheme and a host, and the error it gives for the
// rest names the value escaped, on one line.
func FuzzValidServer(f *testing.F) {
	for _, s := range []string{"https://10.0.0.11:6443", "https://[fd00::1]:6443", "10.0.0.11:6443", "", "https://", "https://a\x1b[2J", "http://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validServer(s)
		if err == nil {
			if u, perr := url.Parse(s); perr != nil || u.Scheme == "" || u.Host == "" {
				t.Fatalf("validServer accepted %q", s)
			}
			return
		}
		for _, c := range err.Error() {
			if c == '\n' || c == '\r' || c == '\x1b' {
				t.Fatalf("validServer(%q) error %q holds a control character", s, err)
			}
		}
	})
}
