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

package serviceimport

import (
	"strconv"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// FuzzParseVersion checks the parser of the resourceVersion a client
// sends to list or watch imports from: any string is a counter this
// server issued, which prints back to the same number, or a 400 for what
// is no version, or a 410 for another server's (so the client lists
// again); never a panic, and never a counter of another epoch.
func FuzzParseVersion(f *testing.F) {
	a := NewAggregate(10)
	for _, seed := range []string{"", "0", "1", a.version(0), a.version(1), a.version(counterMask), "-1", "+1", " 1",
		"18446744073709551615", "18446744073709551616", "0x10", "1e3", "00" + a.version(7)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rv string) {
		counter, err := a.parseVersion(rv)
		if err != nil {
			if counter != 0 || !(apierrors.IsBadRequest(err) || apierrors.IsResourceExpired(err)) {
				t.Fatalf("%q: counter %d, error %v", rv, counter, err)
			}
			return
		}
		if counter > counterMask {
			t.Fatalf("%q: counter %d beyond the mask", rv, counter)
		}
		// Leading zeros aside, the version is the one this server prints.
		v, perr := strconv.ParseUint(rv, 10, 64)
		if perr != nil || strconv.FormatUint(v, 10) != a.version(counter) {
			t.Fatalf("%q accepted as counter %d, which prints as %s", rv, counter, a.version(counter))
		}
	})
}
