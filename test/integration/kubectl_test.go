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
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fedmesh/fedmesh/test/framework"
)

// kubectl is one kubectl binary the tests drive, as a user would.
type kubectl struct {
	name string
	path string
}

// kubectls are the pinned kubectl of the test binaries and the one a user
// of this machine has, which may be several minor versions older.
func kubectls(t *testing.T) []kubectl {
	pinned, err := framework.Binary("kubectl")
	require.NoError(t, err)
	ks := []kubectl{{"pinned", pinned}}
	const system = "/usr/bin/kubectl"
	if _, err := os.Stat(system); err == nil {
		ks = append(ks, kubectl{"system", system})
	} else {
		t.Logf("%s not found: testing the pinned kubectl only", system)
	}
	return ks
}

// run runs kubectl against a kubeconfig and returns its stdout; it fails
// the test, with stderr, when kubectl fails.
func (k kubectl) run(t *testing.T, kubeconfig string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := k.try(t, kubeconfig, stdin, args...)
	require.NoError(t, err, "kubectl %s: %s", strings.Join(args, " "), errOut)
	return out
}

// try runs kubectl and returns stdout, stderr and its error.
func (k kubectl) try(t *testing.T, kubeconfig string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// kubectl caches discovery under HOME; each test gets its own.
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// seed returns an example manifest with its variables substituted.
func seed(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "artifacts", "examples", name))
	require.NoError(t, err)
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	require.NotContains(t, s, "${", "every variable of %s substituted", name)
	return s
}

// indent indents every line of s by n spaces, as the walkthrough's sed does
// to paste a kubeconfig into a Cluster manifest.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.TrimLeft(strings.Join(lines, "\n"), " ")
}
