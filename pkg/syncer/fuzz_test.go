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

import (
	"strconv"
	"testing"
	"time"
)

// FuzzRetryAfter checks the parser of a member's Retry-After header: any
// value is a wait from 0 to maxRetryAfter, a larger number of seconds
// the longest wait, never a negative one.
func FuzzRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "1", "30", "31", "-1", "1.5", " 1", "Wed, 21 Oct 2026 07:28:00 GMT",
		"9223372037", "9223372036854775807", "99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := retryAfter(v)
		if got < 0 || got > maxRetryAfter {
			t.Fatalf("Retry-After %q: a wait of %v", v, got)
		}
		if s, err := strconv.Atoi(v); err == nil && s > 0 {
			if want := min(time.Duration(min(s, 1<<20))*time.Second, maxRetryAfter); got != want {
				t.Fatalf("Retry-After %q: a wait of %v, want %v", v, got, want)
			}
		}
	})
}
