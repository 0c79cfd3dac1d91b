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

package bench

// The fan-out figures: how fast the syncer writes into members, next to
// what a plain client achieves into the same kube-apiserver in the same
// run, and what that costs the members that are not being written.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/syncer"
	"github.com/fedmesh/fedmesh/test/framework"
)

// Fanout are the figures of writing into members. Its fields are
// top-level keys of results.json.
type Fanout struct {
	// FanoutSeconds is the time from starting the syncer on a populated
	// federation to every member holding its imports and the syncer's
	// write count standing still (SyncerSettleSeconds, by its other name).
	FanoutSeconds float64 `json:"fanoutSeconds"`
	// LateJoinerSeconds is the time from creating the Cluster of a new
	// member to that member holding every ServiceImport the control plane
	// served when it joined.
	LateJoinerSeconds float64 `json:"lateJoinerSeconds"`
	// LateJoinerImports is how many imports that is.
	LateJoinerImports int `json:"lateJoinerImports"`
	// MemberWriteLimitPerSecond is what a plain parallel create loop
	// (LimitWriters goroutines, no client rate limit) achieves into the
	// late joiner's kube-apiserver just before it joins: ServiceImports
	// like those the syncer writes, as many as it will import.
	MemberWriteLimitPerSecond float64 `json:"memberWriteLimitPerSecond"`
	// MemberApplyLimitPerSecond is the same loop writing by server-side
	// apply, as the syncer writes: what the write method itself costs.
	MemberApplyLimitPerSecond float64 `json:"memberApplyLimitPerSecond"`
	// SyncerWritePerSecond is the rate of imports the syncer wrote into
	// the late joiner, from its first to its last.
	SyncerWritePerSecond float64 `json:"syncerWritePerSecond"`
	SyncerToLimitRatio   float64 `json:"syncerToLimitRatio"`
	// ExportToMemberImportDuringFanout is export -> ServiceImport in
	// another member, timed between the first members while the syncer
	// fans out into the late joiner.
	ExportToMemberImportDuringFanout Distribution `json:"exportToMemberImportDuringFanout"`
}

// Scale are the figures of fedmesh-apiserver that grow with the number of
// members. Its fields are top-level keys of results.json.
type Scale struct {
	// HeapNoMembersBytes and RSSNoMembersBytes are read before any Cluster
	// is registered; HeapIdleBytes and RSSIdleBytes (Results) with the N
	// members registered and nothing exported.
	HeapNoMembersBytes int64 `json:"heapNoMembersBytes"`
	RSSNoMembersBytes  int64 `json:"rssNoMembersBytes"`
	// BytesPerMemberConnection is the live heap one registered member
	// costs fedmesh-apiserver: its client, watches and caches, empty.
	BytesPerMemberConnection float64 `json:"bytesPerMemberConnection"`
	// RSSPerMemberConnection is the same in resident memory.
	RSSPerMemberConnection float64 `json:"rssPerMemberConnection"`
	// FedmeshIdleCPUCores is fedmesh-apiserver's CPU with the N members
	// registered and nothing changing, in cores, over IdleWindow.
	FedmeshIdleCPUCores float64 `json:"fedmeshIdleCPUCores"`
	// FedmeshPopulateCPUSeconds is fedmesh-apiserver's CPU time while the
	// M exports were created.
	FedmeshPopulateCPUSeconds float64 `json:"fedmeshPopulateCPUSeconds"`
	// FedmeshLoadedCPUCores is its CPU with the exports loaded and nothing
	// changing, over IdleWindow.
	FedmeshLoadedCPUCores float64 `json:"fedmeshLoadedCPUCores"`
}

const (
	// joinerCluster is the member that joins last; it exports nothing.
	joinerCluster = "late-joiner"
	limitNS       = "write-limit"
	fanoutNS      = "fanout-latency"
	// idleWindow is how long idle CPU is averaged over.
	idleWindow = 10 * time.Second
)

// benchImport is a ServiceImport as the syncer writes it into a member for
// an export of the bench: one port, one endpoint.
func benchImport(namespace, name string) *v1alpha1.ServiceImport {
	return &v1alpha1.ServiceImport{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
			Labels: map[string]string{syncer.ManagedByLabel: syncer.ManagedByValue}},
		Spec: v1alpha1.ServiceImportSpec{
			Type: v1alpha1.ClusterSetIP, ServiceAccountName: "*",
			Ports: []v1alpha1.ServicePort{{Name: "http", Protocol: "TCP", Port: 8080,
				Endpoints: []v1alpha1.Endpoint{{ClusterKey: "default/default/default/member-1",
					Target: v1alpha1.Target{Host: "127.0.0.1", IP: "127.0.0.1", Port: 81, Path: "/member-1/" + name}}}}},
		},
	}
}

// measureWriteLimit creates n ServiceImports in a namespace of member with
// a plain parallel loop of workers goroutines and no client-side rate
// limit, and returns the objects created per second. It then deletes them,
// so that the member is as it was. With apply, it creates them by
// server-side apply instead.
func measureWriteLimit(ctx context.Context, member *framework.Cluster, n, workers int, apply bool) (float64, error) {
	cfg := member.Config()
	cfg.QPS = -1 // this measurement only: the server's own limit
	fed, err := versioned.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	if _, err := member.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: limitNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, err
	}
	client := fed.FlomeshV1alpha1().ServiceImports(limitNS)
	write := func(name string) error {
		si := benchImport(limitNS, name)
		if !apply {
			_, err := client.Create(ctx, si, metav1.CreateOptions{})
			return err
		}
		body, err := json.Marshal(si)
		if err != nil {
			return err
		}
		_, err = client.Patch(ctx, name, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: "bench", Force: ptr.To(true)})
		return err
	}
	name := func(i int) string { return fmt.Sprintf("limit-%05d", i) }
	start := time.Now()
	if err := inParallel(workers, n, func(i int) error { return write(name(i)) }); err != nil {
		return 0, fmt.Errorf("creating ServiceImports: %w", err)
	}
	elapsed := time.Since(start)
	// One by one, by as many goroutines: a single DeleteCollection of
	// 10,000 objects outlasts the server's request timeout on a loaded
	// machine.
	if err := inParallel(workers, n, func(i int) error {
		if err := client.Delete(ctx, name(i), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("deleting ServiceImports: %w", err)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// inParallel calls f(0) to f(n-1) from workers goroutines, each taking
// the next index, and returns the first error met; a goroutine stops at
// its first error, the others go on.
func inParallel(workers, n int, f func(int) error) error {
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := f(int(i)); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// measureLateJoiner registers the late joiner with the syncer running and
// the federation populated, and times it to holding every import the
// control plane serves; meanwhile it times exports to member imports
// between the first members.
func measureLateJoiner(ctx context.Context, f *framework.Federation, cfg Config, res *Results, say func(string, ...interface{})) error {
	joiner := f.Member(joinerCluster)
	cp := f.ControlPlane.Fedmesh()
	want := map[string]bool{}
	list, err := cp.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, si := range list.Items {
		want[si.Namespace+"/"+si.Name] = true
	}
	res.LateJoinerImports = len(want)

	w, err := joiner.Fedmesh().FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	defer func() { w.Stop() }()

	// The steady-state probe runs from before the join to its end.
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probe := make(chan probeResult, 1)
	ready := make(chan struct{})
	go func() {
		samples, err := probeSync(probeCtx, f.Members[:cfg.Members], ready)
		probe <- probeResult{samples, err}
	}()
	select {
	case <-ready:
	case r := <-probe:
		return fmt.Errorf("probe: %w", r.err)
	}

	kc, err := joiner.Kubeconfig()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := cp.FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: joinerCluster},
		Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", GatewayPort: 80, Kubeconfig: string(kc)},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("%s registered; waiting for its %d imports", joinerCluster, len(want))
	var profiles sync.WaitGroup
	defer profiles.Wait()
	if cfg.ProfileDir != "" {
		profiles.Add(1)
		go func() {
			defer profiles.Done()
			if err := saveFanoutProfiles(ctx, f, joiner, cfg.ProfileDir); err != nil {
				say("profiles: %v", err)
			} else {
				say("CPU profiles of the fan-out into %s saved in %s", joinerCluster, cfg.ProfileDir)
			}
		}()
	}
	var first, last time.Time
	seen := 0
	held := map[string]bool{}
	lastRV := ""
	add := func(si *v1alpha1.ServiceImport) {
		key := si.Namespace + "/" + si.Name
		if !want[key] || held[key] {
			return
		}
		held[key] = true
		now := time.Now()
		if seen == 0 {
			first = now
		}
		last = now
		seen++
	}
	// A watch of a custom resource ends whenever its CRD is written, as
	// the syncer does when it meets a member whose CRDs are older than its
	// own: resume from the last version seen, and list when that version
	// is gone, so that what the joiner holds is counted once either way.
	resume := func(relist bool) error {
		w.Stop()
		if !relist && lastRV != "" {
			var err error
			if w, err = joiner.Fedmesh().FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{ResourceVersion: lastRV}); err == nil {
				return nil
			}
			if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
				return err
			}
		}
		list, err := joiner.Fedmesh().FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			add(&list.Items[i])
		}
		lastRV = list.ResourceVersion
		w, err = joiner.Fedmesh().FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{ResourceVersion: lastRV})
		return err
	}
	timeout := time.After(15 * time.Minute)
	for seen < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				// An error event is a version that is gone: list.
				if err := resume(ok); err != nil {
					return fmt.Errorf("resuming the watch of %s's imports: %w", joinerCluster, err)
				}
				continue
			}
			si, ok := ev.Object.(*v1alpha1.ServiceImport)
			if !ok {
				continue
			}
			lastRV = si.ResourceVersion
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			add(si)
		case <-timeout:
			return fmt.Errorf("%s holds %d of %d imports after 15 minutes", joinerCluster, seen, len(want))
		}
	}
	res.LateJoinerSeconds = last.Sub(start).Seconds()
	if seen > 1 && last.After(first) {
		res.SyncerWritePerSecond = float64(seen-1) / last.Sub(first).Seconds()
	}
	if res.MemberWriteLimitPerSecond > 0 {
		res.SyncerToLimitRatio = res.SyncerWritePerSecond / res.MemberWriteLimitPerSecond
	}
	stopProbe()
	r := <-probe
	if r.err != nil {
		return fmt.Errorf("probe: %w", r.err)
	}
	// Only the samples taken while the joiner was being written.
	var ms []float64
	for _, s := range r.samples {
		if !s.start.Before(first) && !s.start.After(last) {
			ms = append(ms, s.ms)
		}
	}
	res.ExportToMemberImportDuringFanout = distribution(ms)
	return nil
}

type probeResult struct {
	samples []sample
	err     error
}

// sample is one timing and when it started.
type sample struct {
	start time.Time
	ms    float64
}

// probeSync times exports created in one member to their ServiceImport
// in the next, one after the other, until ctx is done. It closes ready
// once its watches are open.
func probeSync(ctx context.Context, members []*framework.Cluster, ready chan<- struct{}) ([]sample, error) {
	watches := make([]watch.Interface, len(members))
	kube := make([]kubernetes.Interface, len(members))
	fed := make([]versioned.Interface, len(members))
	for i, m := range members {
		kube[i], fed[i] = m.Kube(), m.Fedmesh()
		if _, err := kube[i].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fanoutNS}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		w, err := fed[i].FlomeshV1alpha1().ServiceImports(fanoutNS).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		defer w.Stop()
		watches[i] = w
	}
	close(ready)
	var samples []sample
	// A probe stopped midway is no failure: what it took is kept.
	stopped := func(err error) ([]sample, error) {
		if ctx.Err() != nil {
			return samples, nil
		}
		return nil, err
	}
	// Paced, as a steady state is: back to back, the probe was itself a
	// load of about 20 exports a second, each written into every member,
	// that took a third of the machine from the fan-out it is beside. Each
	// export is an import in every other member, so the pace follows the
	// members: about 10 member writes a second whatever their number.
	tick := time.NewTicker(probeInterval * time.Duration(max(len(members), 2)) / 2)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		from, to := i%len(members), (i+1)%len(members)
		name := fmt.Sprintf("fan-%05d", i)
		if _, err := kube[from].CoreV1().Services(fanoutNS).Create(ctx, headless(name, 8080), metav1.CreateOptions{}); err != nil {
			return stopped(err)
		}
		start := time.Now()
		if _, err := fed[from].FlomeshV1alpha1().ServiceExports(fanoutNS).Create(ctx, export(name, 8080), metav1.CreateOptions{}); err != nil {
			return stopped(err)
		}
		if err := awaitAddedCtx(ctx, watches[to], name); err != nil {
			return stopped(fmt.Errorf("%s: %w", members[to].Name, err))
		}
		samples = append(samples, sample{start, float64(time.Since(start).Microseconds()) / 1000})
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	return samples, nil
}

// probeInterval paces the steady-state probe: about 5 exports a second
// with 2 members, fewer with more (probeSync).
const probeInterval = 200 * time.Millisecond

// awaitAddedCtx is awaitAdded that also returns when ctx is done.
func awaitAddedCtx(ctx context.Context, w watch.Interface, name string) error {
	done := make(chan error, 1)
	go func() { done <- awaitAdded(w, name) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// profileSeconds is how long the fan-out's CPU profiles sample.
const profileSeconds = "10"

// saveFanoutProfiles saves CPU profiles, taken at the same time, of the
// syncer and of the member kube-apiserver it writes into, and the
// syncer's goroutines half-way through: where its workers wait, when
// neither process is busy, is where the fan-out's time goes.
func saveFanoutProfiles(ctx context.Context, f *framework.Federation, member *framework.Cluster, dir string) error {
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return
		}
		code, body, err := f.Syncer().Get(ctx, f.ControlPlane.Config(), "/debug/pprof/goroutine?debug=1")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("syncer /debug/pprof/goroutine: %d %s", code, body)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "syncer-goroutines.txt"), body, 0o644)
		}
		errs[2] = err
	}()
	go func() {
		defer wg.Done()
		code, body, err := f.Syncer().Get(ctx, f.ControlPlane.Config(), "/debug/pprof/profile?seconds="+profileSeconds)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("syncer /debug/pprof/profile: %d %s", code, body)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "syncer-cpu.pprof"), body, 0o644)
		}
		errs[0] = err
	}()
	go func() {
		defer wg.Done()
		rc, err := rest.UnversionedRESTClientFor(withCodecs(member.Config()))
		if err != nil {
			errs[1] = err
			return
		}
		body, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", profileSeconds).Timeout(time.Minute).Do(ctx).Raw()
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "member-apiserver-cpu.pprof"), body, 0o644)
		}
		errs[1] = err
	}()
	wg.Wait()
	return errors.Join(errs...)
}
