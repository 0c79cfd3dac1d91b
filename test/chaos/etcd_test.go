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
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/test/framework"
)

// stored describes what fedmesh keeps in etcd, Clusters and policies, by
// name, as UID and spec: what must survive etcd's crash unchanged.
func stored(ctx context.Context, client versioned.Interface) (map[string]string, error) {
	out := map[string]string{}
	clusters, err := client.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, c := range clusters.Items {
		spec, _ := json.Marshal(c.Spec)
		out["clusters/"+c.Name] = string(c.UID) + " " + string(spec)
	}
	gtps, err := client.FlomeshV1alpha1().GlobalTrafficPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range gtps.Items {
		spec, _ := json.Marshal(p.Spec)
		out["globaltrafficpolicies/"+p.Namespace+"/"+p.Name] = string(p.UID) + " " + string(spec)
	}
	return out, nil
}

// runs counts the runs of a process in its log: each start writes a
// "=== <time>: <binary> <args>" line.
func runs(log string) int {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n=== ")
}

// readyz asks a server's /readyz with cfg, and returns an error unless it
// is ready.
func readyz(ctx context.Context, cfg *rest.Config) error {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, body)
	}
	return nil
}

// TestEtcdKill kills etcd, which holds the Clusters, the policies and
// every cluster's own objects, and starts it again on the same data: the
// Clusters and policies must be intact, and fedmesh-apiserver and
// fedmesh-syncer must recover without being restarted.
func TestEtcdKill(t *testing.T) {
	cfg := Current()
	FullOnly(t, cfg)
	f := framework.Start(t, FederationOptions(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	RegisterMembers(t, ctx, f)
	keys, err := Keys(ctx, f)
	require.NoError(t, err)
	cp := f.ControlPlane.Fedmesh()
	_, err = f.ControlPlane.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.Churn.Namespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	policy := func(name string) *v1alpha1.GlobalTrafficPolicy {
		var targets []v1alpha1.TrafficTarget
		for _, m := range f.Members {
			targets = append(targets, v1alpha1.TrafficTarget{ClusterKey: keys[m.Name]})
		}
		return &v1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: cfg.Churn.Namespace, Name: name},
			Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: targets}}
	}
	_, err = cp.FlomeshV1alpha1().GlobalTrafficPolicies(cfg.Churn.Namespace).Create(ctx, policy(ServiceName(0)), metav1.CreateOptions{})
	require.NoError(t, err)

	watcher, err := WatchImports(ctx, f.ControlPlane.Config())
	require.NoError(t, err)
	defer watcher.Stop()
	churn, err := StartChurn(ctx, f.Members, cfg.Churn)
	require.NoError(t, err)
	defer churn.Stop()
	time.Sleep(2 * cfg.Down)

	before, err := stored(ctx, cp)
	require.NoError(t, err)
	server := f.FedmeshServers()[0]
	pid := server.PID()
	syncerRuns := runs(f.Syncer().Log())

	res := Result{Fault: "etcd SIGKILL", Passed: true}
	var notes []string
	miss := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Error(msg)
		notes = append(notes, msg)
		res.Passed = false
	}

	f.KillEtcd()
	detect, err := Until(ctx, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		err := readyz(ctx, server.Config())
		return err != nil, nil
	})
	if err != nil {
		miss("detect: fedmesh-apiserver's /readyz stayed ready: %v", err)
	} else {
		res.DetectSeconds = Seconds(detect)
		t.Logf("fedmesh-apiserver not ready %s after etcd died", detect.Round(time.Millisecond))
	}
	// The imports are computed in memory: fedmesh-apiserver itself still
	// serves them while etcd is down.
	if _, err := server.Fedmesh().FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err != nil {
		notes = append(notes, fmt.Sprintf("while etcd was down, fedmesh-apiserver did not list imports: %v", err))
	} else {
		notes = append(notes, "imports stayed readable from fedmesh-apiserver while etcd was down")
	}
	time.Sleep(2 * cfg.Down)

	require.NoError(t, f.RestartEtcd(ctx))
	recovered, err := Until(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := readyz(ctx, server.Config()); err != nil {
			return false, err
		}
		_, err := cp.FlomeshV1alpha1().GlobalTrafficPolicies(cfg.Churn.Namespace).Create(ctx, policy(ServiceName(1)), metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
	if err != nil {
		miss("recover: fedmesh-apiserver did not take a write through the aggregator within 60s of etcd's restart: %v", err)
	} else {
		res.RecoverSeconds = Seconds(recovered)
		t.Logf("a policy written through the aggregator %s after etcd restarted", recovered.Round(time.Millisecond))
	}

	after, err := stored(ctx, cp)
	require.NoError(t, err)
	var changed []string
	for k, v := range before {
		if after[k] != v {
			changed = append(changed, fmt.Sprintf("%s: %q, was %q", k, after[k], v))
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		miss("stored objects changed: %s", strings.Join(changed, "; "))
	}
	if server.PID() != pid {
		miss("fedmesh-apiserver was restarted or died (pid %d, was %d)", server.PID(), pid)
	}
	if b, err := os.ReadFile(f.Syncer().Log()); err == nil && strings.Contains(string(b), "Lost the lease") {
		notes = append(notes, "fedmesh-syncer lost its lease while the control plane could not renew it, stopped writing and led again")
	}
	if n := runs(f.Syncer().Log()); n != syncerRuns {
		miss("fedmesh-syncer ran %d times, %d before etcd died", n, syncerRuns)
	}
	if code, body, err := f.Syncer().Get(ctx, f.AnonymousConfig(), "/readyz"); err != nil || code != 200 {
		miss("fedmesh-syncer's /readyz: %d %s %v", code, body, err)
	}

	finishChurn(t, ctx, f, cfg, churn, watcher, keys, &res, miss)
	res.Notes = strings.Join(notes, "; ")
	Record(t, cfg, res)
}
