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

// The faults of a member: its kube-apiserver crashed, hung, cut off, or
// fedmesh's token in it revoked. Each runs the same course (memberFault):
// the churn runs in every member, the last member suffers the fault, and
// fedmesh must notice (Ready=False), withdraw the member's endpoints after
// the grace, restore them once the fault ends, and end holding exactly
// the truth.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/invariant"
)

// memberFault is one fault of a member, and what fedmesh must do about it.
type memberFault struct {
	// name is the fault's row in the results.
	name string
	// setup, when set, prepares the federation instead of RegisterMembers
	// (the token fault joins its members with kubectl fedmesh join).
	setup func(t *testing.T, ctx context.Context, f *framework.Federation)
	// inflict starts the fault on the victim; end ends it.
	inflict func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error
	end     func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error
	// reason is the reason Ready=False must carry ("" for any), and
	// detectWithin the target for saying so.
	reason       string
	detectWithin time.Duration
}

// Bounds every member fault is held to, beyond the configuration's grace
// and convergence time.
const (
	// withdrawSlack is how long after the grace the endpoints may take to
	// go: the grace is measured by the probe that noticed the fault.
	withdrawSlack = 5 * time.Second
	// recoverWithin bounds the time from the end of a fault to the member
	// being Ready with its endpoints back.
	recoverWithin = 30 * time.Second
)

func runMemberFault(t *testing.T, fault memberFault) {
	cfg := Current()
	f := framework.Start(t, FederationOptions(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if fault.setup != nil {
		fault.setup(t, ctx, f)
	} else {
		RegisterMembers(t, ctx, f)
	}
	keys, err := Keys(ctx, f)
	require.NoError(t, err)
	victim := f.Members[len(f.Members)-1]
	cp := f.ControlPlane.Fedmesh()

	watcher, err := WatchImports(ctx, f.ControlPlane.Config())
	require.NoError(t, err)
	defer watcher.Stop()
	churn, err := StartChurn(ctx, f.Members, cfg.Churn)
	require.NoError(t, err)
	defer churn.Stop()

	res := Result{Fault: fault.name, Passed: true}
	var notes []string
	miss := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Error(msg)
		notes = append(notes, msg)
		res.Passed = false
	}
	serving := func(ctx context.Context) (bool, error) {
		s, err := ServedBy(ctx, cp, keys[victim.Name])
		return len(s) > 0, err
	}
	// The victim's endpoints are in the imports before the fault, so that
	// their withdrawal is measured.
	_, err = Until(ctx, 30*time.Second, 50*time.Millisecond, serving)
	require.NoError(t, err, "the victim's exports reach the control plane")
	time.Sleep(cfg.Down)

	start := time.Now()
	require.NoError(t, fault.inflict(t, ctx, f, victim))
	detect, err := WaitCluster(ctx, f, victim.Name, fault.detectWithin, IsReady(metav1.ConditionFalse, fault.reason))
	if err != nil {
		miss("detect: %v", err)
	} else {
		res.DetectSeconds = Seconds(detect)
		t.Logf("%s: Ready=False after %s", victim.Name, detect.Round(time.Millisecond))
	}
	withdrawTarget := cfg.Grace + fault.detectWithin + withdrawSlack
	_, err = Until(ctx, withdrawTarget-time.Since(start), 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		s, err := serving(ctx)
		return err == nil && !s, err
	})
	if err != nil {
		miss("withdraw: the endpoints of %s stayed past %s: %v", victim.Name, withdrawTarget, err)
	} else {
		res.WithdrawSeconds = Seconds(time.Since(start))
		t.Logf("%s: endpoints withdrawn after %s", victim.Name, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(cfg.Down)

	// Recovery is timed from the end of the fault: once a restarted
	// kube-apiserver is ready again, whose own start-up is no part of
	// fedmesh's recovery.
	endStart := time.Now()
	require.NoError(t, fault.end(t, ctx, f, victim))
	ended := time.Now()
	if d := ended.Sub(endStart); d > time.Second {
		notes = append(notes, fmt.Sprintf("ending the fault took %s", d.Round(100*time.Millisecond)))
	}
	_, err = WaitCluster(ctx, f, victim.Name, recoverWithin, IsReady(metav1.ConditionTrue, ""))
	if err == nil {
		_, err = Until(ctx, recoverWithin-time.Since(ended), 50*time.Millisecond, serving)
	}
	if err != nil {
		miss("recover: %v", err)
	} else {
		res.RecoverSeconds = Seconds(time.Since(ended))
		t.Logf("%s: Ready with endpoints %s after the fault ended", victim.Name, time.Since(ended).Round(time.Millisecond))
	}

	finishChurn(t, ctx, f, cfg, churn, watcher, keys, &res, miss)
	res.Notes = strings.Join(notes, "; ")
	Record(t, cfg, res)
}

// finishChurn stops the churn and judges the end state: convergence on
// the truth, acknowledged writes, the watcher's view and its relists.
func finishChurn(t *testing.T, ctx context.Context, f *framework.Federation, cfg Config, churn *Churn, watcher *ImportWatcher,
	keys map[string]string, res *Result, miss func(string, ...any)) {
	t.Helper()
	churn.Stop()
	res.Writes, res.WritesFailed = churn.Counts()
	require.NoError(t, churn.Settle(ctx))
	checker := Checker(f)
	checker.Log = t.Logf
	report, took, err := checker.Converge(ctx, cfg.ConvergeWithin)
	switch {
	case err != nil:
		miss("converge: %v", err)
	case !report.OK():
		t.Errorf("the federation did not hold the truth within %s:\n%s", cfg.ConvergeWithin, report)
		miss("converge: not within %s: %d lost, %d stale, %d duplicated, %d differ (first: %s)", cfg.ConvergeWithin,
			len(report.Lost), len(report.Stale), len(report.Duplicated), len(report.Differ), first(report))
	default:
		res.ConvergeSeconds = Seconds(took)
		t.Logf("converged in %s: %s", took.Round(time.Millisecond), report)
	}
	if took > 5*time.Second {
		// Slow, if within the bound: the servers' logs say why.
		if dir, err := f.KeepLogs(t.Name()); err == nil {
			t.Logf("converging took %s; the logs of every process are kept in %s", took.Round(time.Millisecond), dir)
		}
	}
	res.StaleObjects = len(report.Stale) + len(report.Duplicated) + len(report.Differ)
	lost, err := churn.Lost(ctx, f, keys)
	require.NoError(t, err)
	res.WritesLost = len(lost)
	if len(lost) > 0 {
		miss("writes lost: %s", strings.Join(lost, "; "))
	}
	if len(report.Lost) > 0 && len(lost) == 0 {
		// Objects the truth wants and nobody holds, though every
		// acknowledged export is served: reported with the rest.
		notes := fmt.Sprintf("%d objects of the truth missing", len(report.Lost))
		miss("%s", notes)
	}
	if diff, err := watcher.Matches(ctx, f.ControlPlane.Fedmesh(), 10*time.Second); diff != "" || err != nil {
		miss("the informer's view: %s %v", diff, err)
	}
	res.Relists = watcher.Relists()
}

func TestMemberKill(t *testing.T) {
	FullOnly(t, Current())
	runMemberFault(t, memberFault{
		name: "member kube-apiserver SIGKILL",
		inflict: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			victim.KillAPIServer()
			return nil
		},
		end: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return victim.RestartAPIServer(ctx)
		},
		detectWithin: 10 * time.Second,
	})
}

func TestMemberHang(t *testing.T) {
	FullOnly(t, Current())
	runMemberFault(t, memberFault{
		name: "member kube-apiserver SIGSTOP",
		inflict: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return victim.PauseAPIServer()
		},
		end: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return victim.ResumeAPIServer()
		},
		detectWithin: 10 * time.Second,
	})
}

// first returns the first difference a report names, for a note.
func first(r *invariant.Report) string {
	for _, items := range [][]string{r.Lost, r.Stale, r.Duplicated, r.Differ} {
		if len(items) > 0 {
			if len(items[0]) > 200 {
				return items[0][:200] + "..."
			}
			return items[0]
		}
	}
	return ""
}
