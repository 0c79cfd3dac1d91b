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

package integration

import (
	"os"
	"testing"
)

// quarantined skips a test that fails intermittently for a known, open
// defect, unless FEDMESH_RUN_QUARANTINED=1; the reason names the defect.
// A quarantined test still builds, and runs on demand:
//
//	FEDMESH_RUN_QUARANTINED=1 go test -run 'TestWalkthrough$' ./test/integration/
func quarantined(t *testing.T, defect string) {
	t.Helper()
	if os.Getenv("FEDMESH_RUN_QUARANTINED") != "1" {
		t.Skipf("quarantined: %s (FEDMESH_RUN_QUARANTINED=1 runs it)", defect)
	}
}
