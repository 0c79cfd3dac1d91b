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
package loopback

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// FedmeshConfig is an admin client configuration of fedmesh-apiserver
// itself, not through the aggregator: for its /metrics and /debug
// endpoints. It authenticates with the admin certificate, which
// fedmesh-apiserver accepts through the control plane's client CA.
func (f *Federation) FedmeshConfig() *rest.Config {
	cfg := f.ControlPlane.Config()
	cfg.Host = "https://" + hostPort(f.fedmeshPort)
	return cfg
}

// FedmeshRSS is the resident set size of fedmesh-apiserver, in bytes.
func (f *Federation) FedmeshRSS() (int64, error) {
	pid := f.fedmesh.pid()
	if pid == 0 {
		return 0, fmt.Errorf("fedmesh-apiserver is not running")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc status")
}

// EtcdURL is the client URL of the federation's etcd, for tests that read
// what servers stored.
func (f *Federation) EtcdURL() string { return f.etcdURL }
