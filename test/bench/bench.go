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

// Package bench measures fedmesh against kube-apiserver itself, side by
// side, on a real federation: both peers run on the same machine in the
// same run, so every figure that matters is a ratio or a percentile next
// to its peer's.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/test/framework"
)

// Config is what a run measures.
type Config struct {
	Members int
	Exports int
	// ListRuns is how many times each LIST is timed.
	ListRuns int
	// WatchSamples is how many exports are timed to their watch event.
	WatchSamples int
	// ReadySamples is how many Cluster registrations are timed to Ready.
	ReadySamples int
	// Writers is how many clients populate in parallel.
	Writers int
	// LimitWriters is how many goroutines measure a member's write limit.
	LimitWriters int
	// ProfileDir, if set, is where to save CPU profiles of the syncer and
	// of the member it writes into, taken during the late joiner's
	// fan-out.
	ProfileDir string
	// HeapProfile, if set, is where to save fedmesh-apiserver's heap
	// profile with the exports loaded (go tool pprof reads it).
	HeapProfile string
}

// Distribution is a set of timings in milliseconds.
type Distribution struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50Ms"`
	P99     float64 `json:"p99Ms"`
}

// Results are the figures of one run.
type Results struct {
	Config Config `json:"config"`

	ListServiceImportsJSON Distribution `json:"listServiceImportsJSON"`
	// ListServiceImportsDirectJSON is the same LIST sent to
	// fedmesh-apiserver itself: the difference is the aggregator's proxy.
	ListServiceImportsDirectJSON Distribution `json:"listServiceImportsDirectJSON"`
	// ServiceImportJSONBytes and ServiceJSONBytes are the size of one object
	// in the JSON LIST responses, which the client's decoding time follows.
	ServiceImportJSONBytes float64      `json:"serviceImportJSONBytes"`
	ServiceJSONBytes       float64      `json:"serviceJSONBytes"`
	ListServicesJSON       Distribution `json:"listServicesJSON"`
	ListServicesProtobuf   Distribution `json:"listServicesProtobuf"`
	ListRatioP50           float64      `json:"listRatioP50"`
	KubectlServiceImports  Distribution `json:"kubectlGetServiceImports"`
	KubectlServices        Distribution `json:"kubectlGetServices"`

	ExportToWatchEvent   Distribution `json:"exportToWatchEvent"`
	ExportToMemberImport Distribution `json:"exportToMemberImport"`
	SyncerSettleSeconds  float64      `json:"syncerSettleSeconds"`
	ClusterToReady       Distribution `json:"clusterToReady"`

	HeapIdleBytes      int64   `json:"heapIdleBytes"`
	HeapLoadedBytes    int64   `json:"heapLoadedBytes"`
	RSSIdleBytes       int64   `json:"rssIdleBytes"`
	RSSLoadedBytes     int64   `json:"rssLoadedBytes"`
	HeapBytesPerExport float64 `json:"heapBytesPerExport"`
	// HeapBytesPerExportOneGC is the same read after a single collection,
	// which leaves what sync.Pools hold in the heap.
	HeapBytesPerExportOneGC float64 `json:"heapBytesPerExportOneGC"`

	PopulateSeconds float64 `json:"populateSeconds"`

	// The figures of other measurements, each a struct of its own whose
	// fields are top-level keys of results.json.
	Fanout
	Scale
}

const (
	exportNamespace = "bench"
	peerNamespace   = "peer"
	peerCluster     = "peer"
	latencyNS       = "latency"
	syncNS          = "sync-latency"
)

// Run starts a federation, populates it, measures, and stops it.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Results, error) {
	say := func(format string, args ...interface{}) {
		fmt.Fprintf(progress, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	names := make([]string, cfg.Members)
	for i := range names {
		names[i] = fmt.Sprintf("member-%d", i+1)
	}
	// The peer kube-apiserver holds the Services the LIST of fedmesh is
	// compared with. It is not a member: fedmesh caches every Service of
	// its members, and M more would be counted against its heap per export.
	say("starting etcd, a control plane, %d members, a peer kube-apiserver and fedmesh-apiserver", cfg.Members)
	// No kube-controller-manager: the figures are fedmesh's, and the
	// members' controllers would share the CPU with it (an EndpointSlice
	// for each of the M Services).
	// The late joiner is started with the others, and joins last.
	// The syncer runs with its production lease and member timeout, not
	// the tests' short ones: on a loaded machine a 2 s renew deadline
	// loses the lease in the middle of a fan-out.
	f, err := framework.New(ctx, framework.Options{Members: append(names, peerCluster, joinerCluster), WithSyncer: true,
		SyncerArgs: []string{"-v=2", "--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s",
			"--leader-elect-retry-period=2s", "--member-timeout=10s"},
		WithoutControllerManagers: true})
	if f != nil {
		defer f.Stop()
		// The servers' logs outlive the run, beside the results.
		defer func() {
			if dir, err := f.KeepLogs("bench"); err == nil {
				say("server logs kept in %s", dir)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	// The syncer would write M imports into every member while the other
	// figures are taken; it runs for its own measurement, last.
	f.Syncer().Stop()
	if err := f.InstallMemberCRDs(ctx); err != nil {
		return nil, err
	}
	res := &Results{Config: cfg}
	fed := f.ControlPlane.Fedmesh()

	none, err := liveHeap(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("heap: %w", err)
	}
	res.HeapNoMembersBytes = none[1]
	if res.RSSNoMembersBytes, err = f.FedmeshRSS(); err != nil {
		return nil, err
	}
	for i, name := range names {
		if _, err := register(ctx, f, fed, name, name, int32(81+i)); err != nil {
			return nil, err
		}
	}
	say("%d members registered and Ready", cfg.Members)

	idle, err := liveHeap(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("heap: %w", err)
	}
	res.HeapIdleBytes = idle[1]
	if res.RSSIdleBytes, err = f.FedmeshRSS(); err != nil {
		return nil, err
	}
	res.BytesPerMemberConnection = float64(res.HeapIdleBytes-res.HeapNoMembersBytes) / float64(cfg.Members)
	res.RSSPerMemberConnection = float64(res.RSSIdleBytes-res.RSSNoMembersBytes) / float64(cfg.Members)
	if res.FedmeshIdleCPUCores, err = idleCPU(ctx, f); err != nil {
		return nil, err
	}

	cpu0, err := fedmeshCPUSeconds(ctx, f)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := populate(ctx, f, cfg, say); err != nil {
		return nil, err
	}
	res.PopulateSeconds = time.Since(start).Seconds()

	// The imports are complete when fedmesh lists one per export.
	if err := waitFor(ctx, 5*time.Minute, func() (bool, error) {
		l, err := fed.FlomeshV1alpha1().ServiceImports(exportNamespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == cfg.Exports, err
	}); err != nil {
		return nil, fmt.Errorf("waiting for %d imports: %w", cfg.Exports, err)
	}
	say("fedmesh serves %d ServiceImports", cfg.Exports)
	cpu1, err := fedmeshCPUSeconds(ctx, f)
	if err != nil {
		return nil, err
	}
	res.FedmeshPopulateCPUSeconds = cpu1 - cpu0
	if res.FedmeshLoadedCPUCores, err = idleCPU(ctx, f); err != nil {
		return nil, err
	}

	loaded, err := liveHeap(ctx, f)
	if err != nil {
		return nil, err
	}
	res.HeapLoadedBytes = loaded[1]
	if res.RSSLoadedBytes, err = f.FedmeshRSS(); err != nil {
		return nil, err
	}
	res.HeapBytesPerExport = float64(res.HeapLoadedBytes-res.HeapIdleBytes) / float64(cfg.Exports)
	res.HeapBytesPerExportOneGC = float64(loaded[0]-idle[0]) / float64(cfg.Exports)
	if cfg.HeapProfile != "" {
		if err := saveHeapProfile(ctx, f, cfg.HeapProfile); err != nil {
			return nil, err
		}
		say("heap profile of fedmesh-apiserver written to %s", cfg.HeapProfile)
	}

	say("timing LISTs (%d runs each)", cfg.ListRuns)
	if err := measureLists(ctx, f, cfg, res); err != nil {
		return nil, err
	}
	say("timing exports to watch events (%d samples)", cfg.WatchSamples)
	if res.ExportToWatchEvent, err = measureWatch(ctx, f, cfg); err != nil {
		return nil, err
	}
	say("timing Cluster registrations to Ready (%d samples)", cfg.ReadySamples)
	if res.ClusterToReady, err = measureReady(ctx, f, cfg); err != nil {
		return nil, err
	}
	say("starting fedmesh-syncer; it writes every member's imports")
	if res.SyncerSettleSeconds, err = settleSyncer(ctx, f, cfg); err != nil {
		return nil, err
	}
	res.FanoutSeconds = res.SyncerSettleSeconds
	say("members synced in %.1f s; timing exports to member ServiceImports (%d samples)", res.SyncerSettleSeconds, cfg.WatchSamples)
	if res.ExportToMemberImport, err = measureSync(ctx, f, cfg); err != nil {
		return nil, err
	}
	say("measuring the write limit of %s: %d ServiceImports created by %d goroutines", joinerCluster, cfg.Exports, cfg.LimitWriters)
	if res.MemberWriteLimitPerSecond, err = measureWriteLimit(ctx, f.Member(joinerCluster), cfg.Exports, cfg.LimitWriters, false); err != nil {
		return nil, fmt.Errorf("write limit: %w", err)
	}
	if res.MemberApplyLimitPerSecond, err = measureWriteLimit(ctx, f.Member(joinerCluster), cfg.Exports, cfg.LimitWriters, true); err != nil {
		return nil, fmt.Errorf("apply limit: %w", err)
	}
	say("%.0f ServiceImports/s created, %.0f/s applied; joining %s", res.MemberWriteLimitPerSecond, res.MemberApplyLimitPerSecond, joinerCluster)
	if err := measureLateJoiner(ctx, f, cfg, res, say); err != nil {
		return nil, fmt.Errorf("late joiner: %w", err)
	}
	say("%s holds its %d imports after %.1f s", joinerCluster, res.LateJoinerImports, res.LateJoinerSeconds)
	return res, nil
}

// register creates a Cluster for a member and returns how long it took to
// turn Ready.
func register(ctx context.Context, f *framework.Federation, fed versioned.Interface, name, member string, port int32) (time.Duration, error) {
	kc, err := f.Member(member).Kubeconfig()
	if err != nil {
		return 0, err
	}
	clusters := fed.FlomeshV1alpha1().Clusters()
	w, err := clusters.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := clusters.Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", GatewayPort: port, Kubeconfig: string(kc)},
	}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch of cluster %s ended", name)
			}
			if c, ok := ev.Object.(*v1alpha1.Cluster); ok && meta.IsStatusConditionTrue(c.Status.Conditions, "Ready") {
				return time.Since(start), nil
			}
		case <-timeout:
			return 0, fmt.Errorf("cluster %s not Ready within a minute", name)
		}
	}
}

// populate creates cfg.Exports headless Services with their exports,
// spread over the members, and as many Services again in the peer
// kube-apiserver: the peer LIST of the same count. Headless Services skip
// the IP allocator, which would measure something else.
func populate(ctx context.Context, f *framework.Federation, cfg Config, say func(string, ...interface{})) error {
	// The members and the peer; the late joiner gets its namespaces from
	// the syncer, as a new cluster would.
	for _, m := range f.Members[:cfg.Members+1] {
		for _, ns := range []string{exportNamespace, latencyNS, peerNamespace} {
			if _, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	}
	type job struct {
		member int
		i      int
		peer   bool
	}
	jobs := make(chan job)
	var done atomic.Int64
	total := int64(2 * cfg.Exports)
	errs := make(chan error, cfg.Writers)
	var wg sync.WaitGroup
	kubes := make([]kubernetes.Interface, cfg.Members+1)
	feds := make([]versioned.Interface, cfg.Members+1)
	for i, m := range f.Members[:cfg.Members+1] {
		kubes[i], feds[i] = m.Kube(), m.Fedmesh()
	}
	for range cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				name := fmt.Sprintf("svc-%05d", j.i)
				ns := exportNamespace
				if j.peer {
					ns = peerNamespace
				}
				if _, err := kubes[j.member].CoreV1().Services(ns).Create(ctx, headless(name, 8080), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				if !j.peer {
					if _, err := feds[j.member].FlomeshV1alpha1().ServiceExports(ns).Create(ctx, export(name, 8080), metav1.CreateOptions{}); err != nil {
						errs <- err
						return
					}
				}
				if n := done.Add(1); n%1000 == 0 || n == total {
					say("populated %d/%d objects", n, total)
				}
			}
		}()
	}
	var err error
feed:
	for i := 0; i < cfg.Exports; i++ {
		for _, j := range []job{{member: i % cfg.Members, i: i}, {member: cfg.Members, i: i, peer: true}} {
			select {
			case jobs <- j:
			case err = <-errs:
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func headless(name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}}},
	}
}

func export(name string, port int32) *v1alpha1.ServiceExport {
	return &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ServiceExportSpec{ServiceAccountName: "*",
			Rules: []v1alpha1.ServiceExportRule{{PortNumber: port, Path: "/" + name, PathType: v1alpha1.PathTypePrefix}}},
	}
}

// measureLists times LIST of every ServiceImport through the aggregator
// next to LIST of as many Services from one member's kube-apiserver, as
// typed client-go calls in JSON (and protobuf for kube-apiserver), and the
// same through kubectl.
func measureLists(ctx context.Context, f *framework.Federation, cfg Config, res *Results) error {
	fed := f.ControlPlane.Fedmesh()
	member := f.Member(peerCluster)
	// client-go's typed clients of built-in kinds default to protobuf:
	// the JSON peer must ask for JSON.
	jsonCfg := member.Config()
	jsonCfg.ContentType = "application/json"
	jsonCfg.AcceptContentTypes = "application/json"
	jsonKube := kubernetes.NewForConfigOrDie(jsonCfg)
	protoCfg := member.Config()
	protoCfg.ContentType = "application/vnd.kubernetes.protobuf"
	protoCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	protoKube := kubernetes.NewForConfigOrDie(protoCfg)

	timeIt := func(list func() (int, error)) (Distribution, error) {
		var ms []float64
		for range cfg.ListRuns {
			start := time.Now()
			n, err := list()
			if err != nil {
				return Distribution{}, err
			}
			if n != cfg.Exports {
				return Distribution{}, fmt.Errorf("listed %d objects, want %d", n, cfg.Exports)
			}
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
		}
		return distribution(ms), nil
	}
	var err error
	// Interleaving the peers would be fairer still; one after the other,
	// each warms its own caches first.
	if res.ListServiceImportsJSON, err = timeIt(func() (int, error) {
		l, err := fed.FlomeshV1alpha1().ServiceImports(exportNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}); err != nil {
		return fmt.Errorf("LIST serviceimports: %w", err)
	}
	direct := versioned.NewForConfigOrDie(f.FedmeshConfig())
	if res.ListServiceImportsDirectJSON, err = timeIt(func() (int, error) {
		l, err := direct.FlomeshV1alpha1().ServiceImports(exportNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}); err != nil {
		return fmt.Errorf("LIST serviceimports from fedmesh-apiserver: %w", err)
	}
	if res.ListServicesJSON, err = timeIt(func() (int, error) {
		l, err := jsonKube.CoreV1().Services(peerNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}); err != nil {
		return fmt.Errorf("LIST services: %w", err)
	}
	if res.ListServicesProtobuf, err = timeIt(func() (int, error) {
		l, err := protoKube.CoreV1().Services(peerNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}); err != nil {
		return fmt.Errorf("LIST services (protobuf): %w", err)
	}
	res.ListRatioP50 = res.ListServiceImportsJSON.P50 / res.ListServicesJSON.P50
	if res.ServiceImportJSONBytes, err = jsonBytesPerObject(ctx, fed.FlomeshV1alpha1().RESTClient(),
		"/apis/flomesh.io/v1alpha1/namespaces/"+exportNamespace+"/serviceimports", cfg.Exports); err != nil {
		return err
	}
	if res.ServiceJSONBytes, err = jsonBytesPerObject(ctx, jsonKube.CoreV1().RESTClient(),
		"/api/v1/namespaces/"+peerNamespace+"/services", cfg.Exports); err != nil {
		return err
	}

	kubectl, err := framework.Binary("kubectl")
	if err != nil {
		return err
	}
	home, err := os.MkdirTemp("", "bench-kubectl")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	runs := max(3, min(cfg.ListRuns, 10))
	// Each table prints a header and a row per object.
	timeKubectl := func(kubeconfig string, objects int, args ...string) (Distribution, error) {
		var ms []float64
		for range runs {
			cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
			cmd.Env = append(os.Environ(), "HOME="+home)
			var out bytes.Buffer
			cmd.Stdout = &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return Distribution{}, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
			}
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			if lines := strings.Count(out.String(), "\n"); lines != objects+1 {
				return Distribution{}, fmt.Errorf("kubectl %s printed %d lines, want %d", strings.Join(args, " "), lines, objects+1)
			}
		}
		return distribution(ms), nil
	}
	// All namespaces, as users ask: the imports are all in one namespace
	// so far, and the peer holds its Services and default/kubernetes.
	if res.KubectlServiceImports, err = timeKubectl(f.ControlPlane.KubeconfigPath, cfg.Exports, "get", "serviceimports", "-A"); err != nil {
		return err
	}
	res.KubectlServices, err = timeKubectl(member.KubeconfigPath, cfg.Exports+1, "get", "services", "-A")
	return err
}

// measureWatch times, at steady state, an export created in a member to
// the ADDED event of its import on a watch through the aggregator.
func measureWatch(ctx context.Context, f *framework.Federation, cfg Config) (Distribution, error) {
	fed := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports(latencyNS)
	w, err := fed.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return Distribution{}, err
	}
	defer w.Stop()
	var ms []float64
	for i := range cfg.WatchSamples {
		m := f.Members[i%cfg.Members]
		name := fmt.Sprintf("lat-%05d", i)
		if _, err := m.Kube().CoreV1().Services(latencyNS).Create(ctx, headless(name, 8080), metav1.CreateOptions{}); err != nil {
			return Distribution{}, err
		}
		start := time.Now()
		if _, err := m.Fedmesh().FlomeshV1alpha1().ServiceExports(latencyNS).Create(ctx, export(name, 8080), metav1.CreateOptions{}); err != nil {
			return Distribution{}, err
		}
		if err := awaitAdded(w, name); err != nil {
			return Distribution{}, err
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	return distribution(ms), nil
}

func awaitAdded(w watch.Interface, name string) error {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch ended")
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch failed: %v", ev.Object)
			}
			if si, ok := ev.Object.(*v1alpha1.ServiceImport); ok && ev.Type == watch.Added && si.Name == name {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no ADDED event for %s within 30s", name)
		}
	}
}

// settleSyncer starts the syncer and waits until every member holds the
// imports of what the others export and the syncer has stopped writing.
func settleSyncer(ctx context.Context, f *framework.Federation, cfg Config) (float64, error) {
	start := time.Now()
	if err := f.Syncer().Start(ctx); err != nil {
		return 0, err
	}
	for i, m := range f.Members[:cfg.Members] {
		own := cfg.Exports / cfg.Members
		if i < cfg.Exports%cfg.Members {
			own++
		}
		want := cfg.Exports - own
		fed := m.Fedmesh()
		if err := waitFor(ctx, 15*time.Minute, func() (bool, error) {
			l, err := fed.FlomeshV1alpha1().ServiceImports(exportNamespace).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err == nil && len(l.Items) == want, err
		}); err != nil {
			return 0, fmt.Errorf("%s holds no %d imports: %w", m.Name, want, err)
		}
	}
	// Steady state: the imports are written, and so are the Ingresses and
	// export conditions once the syncer's write count stops moving.
	last, still := -1.0, 0
	if err := waitFor(ctx, 15*time.Minute, func() (bool, error) {
		n, err := f.Syncer().Writes(ctx)
		if err != nil {
			return false, err
		}
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		return still >= 25, nil // 5 s at the poll's 200 ms
	}); err != nil {
		return 0, fmt.Errorf("the syncer did not settle: %w", err)
	}
	return time.Since(start).Seconds(), nil
}

// measureSync times, with the syncer settled, an export created in a
// member to its ServiceImport written into the next member.
func measureSync(ctx context.Context, f *framework.Federation, cfg Config) (Distribution, error) {
	members := f.Members[:cfg.Members]
	watches := make([]watch.Interface, len(members))
	for i, m := range members {
		w, err := m.Fedmesh().FlomeshV1alpha1().ServiceImports(syncNS).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			return Distribution{}, err
		}
		defer w.Stop()
		watches[i] = w
		if _, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: syncNS}}, metav1.CreateOptions{}); err != nil {
			return Distribution{}, err
		}
	}
	var ms []float64
	for i := range cfg.WatchSamples {
		from, to := i%len(members), (i+1)%len(members)
		m := members[from]
		name := fmt.Sprintf("sync-%05d", i)
		if _, err := m.Kube().CoreV1().Services(syncNS).Create(ctx, headless(name, 8080), metav1.CreateOptions{}); err != nil {
			return Distribution{}, err
		}
		start := time.Now()
		if _, err := m.Fedmesh().FlomeshV1alpha1().ServiceExports(syncNS).Create(ctx, export(name, 8080), metav1.CreateOptions{}); err != nil {
			return Distribution{}, err
		}
		if err := awaitAdded(watches[to], name); err != nil {
			return Distribution{}, fmt.Errorf("%s: %w", members[to].Name, err)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	return distribution(ms), nil
}

// measureReady times Cluster registrations to Ready, each a new Cluster of
// the first member, deleted afterwards.
func measureReady(ctx context.Context, f *framework.Federation, cfg Config) (Distribution, error) {
	fed := f.ControlPlane.Fedmesh()
	var ms []float64
	for i := range cfg.ReadySamples {
		name := fmt.Sprintf("ready-%03d", i)
		d, err := register(ctx, f, fed, name, f.Members[0].Name, 80)
		if err != nil {
			return Distribution{}, err
		}
		ms = append(ms, float64(d.Microseconds())/1000)
		if err := fed.FlomeshV1alpha1().Clusters().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return Distribution{}, err
		}
	}
	return distribution(ms), nil
}

// liveHeap forces a garbage collection in fedmesh-apiserver (its pprof
// heap endpoint does, with gc=1) and reads the heap it then holds, twice:
// a sync.Pool keeps what it holds through one collection (after a LIST,
// some megabytes of gzip writers), which is not retained data, and drops
// it in the second. It returns the heap after the first and the second.
func liveHeap(ctx context.Context, f *framework.Federation) ([2]int64, error) {
	var heap [2]int64
	rc, err := rest.UnversionedRESTClientFor(withCodecs(f.FedmeshConfig()))
	if err != nil {
		return heap, err
	}
	for i := range heap {
		if err := rc.Get().AbsPath("/debug/pprof/heap").Param("gc", "1").Do(ctx).Error(); err != nil {
			return heap, fmt.Errorf("forcing a GC: %w", err)
		}
		if heap[i], err = heapAlloc(ctx, rc); err != nil {
			return heap, err
		}
	}
	return heap, nil
}

// heapAlloc reads go_memstats_heap_alloc_bytes off the server's metrics.
func heapAlloc(ctx context.Context, rc rest.Interface) (int64, error) {
	v, err := metricValue(ctx, rc, "go_memstats_heap_alloc_bytes")
	return int64(v), err
}

// metricValue reads an unlabelled metric off the server's metrics.
func metricValue(ctx context.Context, rc rest.Interface, name string) (float64, error) {
	body, err := rc.Get().AbsPath("/metrics").Do(ctx).Raw()
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// fedmeshCPUSeconds is the CPU time fedmesh-apiserver has used.
func fedmeshCPUSeconds(ctx context.Context, f *framework.Federation) (float64, error) {
	rc, err := rest.UnversionedRESTClientFor(withCodecs(f.FedmeshConfig()))
	if err != nil {
		return 0, err
	}
	return metricValue(ctx, rc, "process_cpu_seconds_total")
}

// idleCPU is fedmesh-apiserver's CPU, in cores, over idleWindow of
// nothing changing.
func idleCPU(ctx context.Context, f *framework.Federation) (float64, error) {
	before, err := fedmeshCPUSeconds(ctx, f)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(idleWindow):
	}
	after, err := fedmeshCPUSeconds(ctx, f)
	if err != nil {
		return 0, err
	}
	return (after - before) / time.Since(start).Seconds(), nil
}

// saveHeapProfile saves fedmesh-apiserver's heap profile, the evidence
// behind its bytes per export.
func saveHeapProfile(ctx context.Context, f *framework.Federation, path string) error {
	rc, err := rest.UnversionedRESTClientFor(withCodecs(f.FedmeshConfig()))
	if err != nil {
		return err
	}
	body, err := rc.Get().AbsPath("/debug/pprof/heap").Do(ctx).Raw()
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.WriteFile(path, body, 0o644)
}

func distribution(ms []float64) Distribution {
	sort.Float64s(ms)
	pct := func(p float64) float64 {
		if len(ms) == 0 {
			return 0
		}
		i := int(p*float64(len(ms))+0.5) - 1
		return ms[max(0, min(i, len(ms)-1))]
	}
	return Distribution{Samples: len(ms), P50: pct(0.50), P99: pct(0.99)}
}

func waitFor(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := check()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out (last error: %v)", last)
}

// jsonBytesPerObject is the size of a JSON LIST response at path divided
// by the n objects it holds.
func jsonBytesPerObject(ctx context.Context, c rest.Interface, path string, n int) (float64, error) {
	body, err := c.Get().AbsPath(path).SetHeader("Accept", "application/json").Do(ctx).Raw()
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	return float64(len(body)) / float64(n), nil
}

// Table prints the results as a table.
func (r *Results) Table(w io.Writer) {
	fmt.Fprintf(w, "fedmesh bench: %d members, %d exports\n\n", r.Config.Members, r.Config.Exports)
	fmt.Fprintf(w, "%-52s %10s %10s %8s\n", "measure", "p50", "p99", "samples")
	row := func(name string, d Distribution) {
		fmt.Fprintf(w, "%-52s %8.1fms %8.1fms %8d\n", name, d.P50, d.P99, d.Samples)
	}
	row("LIST serviceimports via aggregator (typed, JSON)", r.ListServiceImportsJSON)
	row("LIST serviceimports, fedmesh-apiserver itself", r.ListServiceImportsDirectJSON)
	row("LIST services, kube-apiserver (typed, JSON)", r.ListServicesJSON)
	row("LIST services, kube-apiserver (typed, protobuf)", r.ListServicesProtobuf)
	fmt.Fprintf(w, "%-52s %9.2fx\n", "LIST ratio fedmesh/kube-apiserver (JSON, p50)", r.ListRatioP50)
	fmt.Fprintf(w, "%-52s %8.0f B serviceimport, %.0f B service\n", "JSON per object in a LIST", r.ServiceImportJSONBytes, r.ServiceJSONBytes)
	row("kubectl get serviceimports -A", r.KubectlServiceImports)
	row("kubectl get services -A (kube-apiserver)", r.KubectlServices)
	row("export in a member -> watch event on control plane", r.ExportToWatchEvent)
	row("export -> ServiceImport in another member (syncer)", r.ExportToMemberImport)
	row("Cluster created -> Ready=True", r.ClusterToReady)
	fmt.Fprintf(w, "%-52s %8.1f MiB idle, %.1f MiB loaded\n", "fedmesh-apiserver live heap", mib(r.HeapIdleBytes), mib(r.HeapLoadedBytes))
	fmt.Fprintf(w, "%-52s %8.1f MiB idle, %.1f MiB loaded\n", "fedmesh-apiserver RSS", mib(r.RSSIdleBytes), mib(r.RSSLoadedBytes))
	fmt.Fprintf(w, "%-52s %8.0f B (%.0f B after a single GC)\n", "live heap per export", r.HeapBytesPerExport, r.HeapBytesPerExportOneGC)
	fmt.Fprintf(w, "%-52s %8.1f s\n", "populating", r.PopulateSeconds)
	fmt.Fprintf(w, "%-52s %8.1f s\n", "syncer writing every member's imports (fan-out)", r.FanoutSeconds)
	fmt.Fprintf(w, "%-52s %8.1f s (%d imports)\n", "late joiner: Cluster created -> every import", r.LateJoinerSeconds, r.LateJoinerImports)
	fmt.Fprintf(w, "%-52s %8.0f /s (%.0f /s by server-side apply)\n", "member write limit (plain parallel create)", r.MemberWriteLimitPerSecond, r.MemberApplyLimitPerSecond)
	fmt.Fprintf(w, "%-52s %8.0f /s (%.2fx the limit)\n", "syncer writing into the late joiner", r.SyncerWritePerSecond, r.SyncerToLimitRatio)
	row("export -> member ServiceImport during a fan-out", r.ExportToMemberImportDuringFanout)
	fmt.Fprintf(w, "%-52s %8.1f MiB no member, %.1f MiB with %d\n", "fedmesh-apiserver live heap, members idle", mib(r.HeapNoMembersBytes), mib(r.HeapIdleBytes), r.Config.Members)
	fmt.Fprintf(w, "%-52s %8.0f B heap, %.0f B RSS\n", "per member connection", r.BytesPerMemberConnection, r.RSSPerMemberConnection)
	fmt.Fprintf(w, "%-52s %8.3f cores idle, %.3f loaded; %.1f s populating\n", "fedmesh-apiserver CPU", r.FedmeshIdleCPUCores, r.FedmeshLoadedCPUCores, r.FedmeshPopulateCPUSeconds)
}

// WriteJSON writes the results to path.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func withCodecs(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme.Scheme).WithoutConversion()
	return c
}
