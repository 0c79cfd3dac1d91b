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
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedmesh/fedmesh/test/framework"
)

var (
	fullFlag    = flag.Bool("full", false, "run the full fault suite (also FEDMESH_CHAOS=full); the small one runs by default, as in make test")
	resultsFlag = flag.String("results", "", "the results file to merge rows into (default _output/chaos/results.json, or results-small.json for the small configuration)")
)

// Config is a configuration of the suite.
type Config struct {
	// Name is "small" or "full".
	Name string
	// Full is whether every fault runs.
	Full bool
	// Members are the member clusters of each federation.
	Members []string
	// Churn is the steady export churn that runs during every fault.
	Churn ChurnOptions
	// Grace is fedmesh-apiserver's --member-unavailable-grace in the
	// suite: how long a member that is not Ready keeps its endpoints.
	Grace time.Duration
	// Down is how long a fault lasts once fedmesh has withdrawn the
	// member's endpoints (or, for faults that withdraw nothing, at all).
	Down time.Duration
	// ConvergeWithin is the time the federation has, once the fault is
	// over and the churn has stopped, to hold exactly the truth. It is the
	// suite's stated bound, the same for every fault.
	ConvergeWithin time.Duration
	// ResultsPath is the file the rows are merged into.
	ResultsPath string
}

// Current returns the configuration the flags and the environment select.
func Current() Config {
	full := *fullFlag || os.Getenv("FEDMESH_CHAOS") == "full"
	c := Config{
		Name:           "small",
		Members:        []string{"cluster-1", "cluster-2"},
		Churn:          ChurnOptions{Namespace: "chaos", Names: 6, Interval: 200 * time.Millisecond},
		Grace:          5 * time.Second,
		Down:           2 * time.Second,
		ConvergeWithin: 30 * time.Second,
	}
	if full {
		c.Name, c.Full = "full", true
		c.Members = []string{"cluster-1", "cluster-2", "cluster-3"}
		c.Churn = ChurnOptions{Namespace: "chaos", Names: 20, Interval: 50 * time.Millisecond}
		c.Down = 5 * time.Second
	}
	c.ResultsPath = *resultsFlag
	if c.ResultsPath == "" {
		root, err := framework.RepoRoot()
		if err != nil {
			root = "."
		}
		name := "results.json"
		if !full {
			name = "results-small.json"
		}
		c.ResultsPath = filepath.Join(root, "_output", "chaos", name)
	}
	return c
}

// FullOnly skips a test outside the full configuration, saying so.
func FullOnly(t *testing.T, cfg Config) {
	t.Helper()
	if !cfg.Full {
		t.Skip("runs in the full configuration only (make chaos, or -full / FEDMESH_CHAOS=full); make test runs the small one")
	}
}
