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
package framework

import (
	"fmt"
	"os"
	"path/filepath"
)

// FedmeshBinary returns the path of one of fedmesh's own commands, such as
// kubectl-fedmesh, built from the working tree once per test process (see
// fedmeshBinaries). Its directory can go on a PATH, for kubectl to find a
// plugin there.
func FedmeshBinary(name string) (string, error) {
	dir, err := fedmeshBinaries()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no command %s among fedmesh's (./cmd/...): %w", name, err)
	}
	return p, nil
}
