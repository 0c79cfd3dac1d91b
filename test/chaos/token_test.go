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
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/pkg/clusterset"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"github.com/fedmesh/fedmesh/test/framework"
)

// fedmeshPlugin runs "kubectl fedmesh" through the pinned kubectl, with
// the plugin built from the working tree on the PATH, against the
// control plane and a member's admin kubeconfig.
func fedmeshPlugin(ctx context.Context, f *framework.Federation, m *framework.Cluster, args ...string) (string, error) {
	plugin, err := framework.FedmeshBinary("kubectl-fedmesh")
	if err != nil {
		return "", err
	}
	kubectl, err := framework.Binary("kubectl")
	if err != nil {
		return "", err
	}
	args = append(append([]string{"fedmesh"}, args...), "--kubeconfig", f.ControlPlane.KubeconfigPath, "--member-kubeconfig", m.KubeconfigPath)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+f.Dir(),
		"PATH="+filepath.Dir(plugin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// joinMembers joins every member as a user does, with kubectl fedmesh
// join: a least-privilege token bound to a Secret of the member.
func joinMembers(t *testing.T, ctx context.Context, f *framework.Federation) {
	t.Helper()
	for i, m := range f.Members {
		out, err := fedmeshPlugin(ctx, f, m, "join", m.Name, "--gateway-host", "127.0.0.1",
			"--gateway-port", strconv.Itoa(81+i), "--wait")
		require.NoError(t, err)
		t.Logf("%s", out)
	}
}

// TestMemberTokenRevoked revokes fedmesh's token in a member (deletes the
// Secret it is bound to): fedmesh must say Ready=False, reason
// Unauthorized, within 20 s, and kubectl fedmesh rotate must restore it.
// A kube-apiserver caches a token it authenticated for 10 s, so the
// revocation takes that long to bite.
func TestMemberTokenRevoked(t *testing.T) {
	runMemberFault(t, memberFault{
		name:  "member token revoked",
		setup: joinMembers,
		inflict: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return victim.Kube().CoreV1().Secrets(memberrbac.IdentityNamespace).DeleteCollection(ctx, metav1.DeleteOptions{},
				metav1.ListOptions{LabelSelector: memberrbac.TokenSecretsSelector})
		},
		end: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			out, err := fedmeshPlugin(ctx, f, victim, "rotate", victim.Name)
			t.Logf("%s", out)
			return err
		},
		reason:       clusterset.ReasonUnauthorized,
		detectWithin: 20 * time.Second,
	})
}
