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

package chaos

import (
	"flag"
	"testing"

	"github.com/fedmesh/fedmesh/test/framework"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		// fedmesh's commands are built once per test process, by the
		// first federation, within its start-up budget of 3 minutes; on a
		// busy machine the build alone has taken most of that. Built
		// here, before any test starts, it counts against no federation.
		_, _ = framework.FedmeshBinary("fedmesh-apiserver")
	}
	framework.Main(m)
}
