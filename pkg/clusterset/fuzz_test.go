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

package clusterset

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMemberStrings feeds what a member reports and fedmesh writes into a
// Cluster's status: its version, kept only when well formed and short, and
// a condition message, cut to maxMessageLength on a character boundary.
func FuzzMemberStrings(f *testing.F) {
	for _, s := range []string{"v1.37.2", "v1.31.4+k3s1", "v1.30.2-eks-1234abc", "1.2.3", "v1.2.3\n", strings.Repeat("é", 600), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v := reportedVersion(s); v != "" && (v != s || len(v) > 100 || strings.ContainsAny(v, " \t\r\n\x1b")) {
			t.Fatalf("reportedVersion(%q) = %q", s, v)
		}
		m := truncateMessage(s)
		if len(m) > maxMessageLength+len("...") || !strings.HasPrefix(s, strings.TrimSuffix(m, "...")) {
			t.Fatalf("truncateMessage(%q) = %q", s, m)
		}
		if utf8.ValidString(s) && !utf8.ValidString(m) {
			t.Fatalf("truncateMessage(%q) = %q, not valid UTF-8", s, m)
		}
	})
}
