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

// The faults of fedmesh's own processes: fedmesh-apiserver killed and
// restarted, its replicas behind a balancer with clients moved between
// them, and the leading fedmesh-syncer killed. Beside the churn, one
// export never changes (stable): no control-plane fault may take its
// import out of a member, nor its Ingress out of the exporter, since the
// data plane would lose the service meanwhile. Informer-style clients
// (recorder) watch the aggregated API throughout and must never skip a
// change.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/syncer"
	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/loopback"
)

// stableName is the export that no test changes.
const stableName = "stable"

// Bounds of the control-plane faults.
const (
	// cpRecoverWithin bounds the time from a restart, or a switch, to
	// the clients being served in full again.
	cpRecoverWithin = 30 * time.Second
	// leaseRetry is how late, at most, after the lease of a leader that
	// died has expired, the other syncer takes it: it tries every retry
	// period (500ms, test/framework's syncer flags), which client-go's
	// leader election jitters by up to 1.2 times more. A candidate can
	// never take a lease before it expires, so the time from the kill
	// to the takeover is the rest of the lease's term (up to 3s) plus
	// this.
	leaseRetry = 1100 * time.Millisecond
	// clientResync is how long an informer-style client may take, once
	// the server is back, to hold the true set again: client-go's
	// reflector retries a failing list or watch after a back-off that
	// doubles from 800ms to 30s, jittered up to twice that, so a client
	// that failed for as long as fedmesh-apiserver was down may wait a
	// minute before it tries again.
	clientResync = 65 * time.Second
)

// cpFault is what every control-plane fault test sets up: a federation
// with its members registered, the churn, the stable export and its
// watchers, and the informer-style clients of the aggregated API.
type cpFault struct {
	t        *testing.T
	cfg      Config
	f        *framework.Federation
	keys     map[string]string
	churn    *Churn
	watcher  *ImportWatcher
	recs     []*recorder
	stable   *stableWatch
	res      Result
	notes    []string
	exporter *framework.Cluster
}

func startCPFault(t *testing.T, ctx context.Context, name string, opts func(*framework.Options)) *cpFault {
	cfg := Current()
	o := FederationOptions(cfg)
	if opts != nil {
		opts(&o)
	}
	f := framework.Start(t, o)
	RegisterMembers(t, ctx, f)
	keys, err := Keys(ctx, f)
	require.NoError(t, err)
	c := &cpFault{t: t, cfg: cfg, f: f, keys: keys, res: Result{Fault: name, Passed: true}, exporter: f.Members[0]}

	c.churn, err = StartChurn(ctx, f.Members, cfg.Churn)
	require.NoError(t, err)
	t.Cleanup(c.churn.Stop)
	exportStable(t, ctx, c.exporter, cfg.Churn.Namespace)
	c.stable = watchStable(t, ctx, f, c.exporter, cfg.Churn.Namespace)

	c.watcher, err = WatchImports(ctx, f.ControlPlane.Config())
	require.NoError(t, err)
	t.Cleanup(c.watcher.Stop)
	for _, listThen := range []bool{false, true} {
		name := "watch-list client"
		if listThen {
			name = "list-then-watch client"
		}
		r, err := startRecorder(ctx, name, f.ControlPlane.Config(), listThen)
		require.NoError(t, err)
		t.Cleanup(r.stop)
		c.recs = append(c.recs, r)
	}
	return c
}

// miss records a target missed: the test fails, and the row says why.
func (c *cpFault) miss(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.t.Error(msg)
	c.notes = append(c.notes, msg)
	c.res.Passed = false
}

func (c *cpFault) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.t.Log(msg)
	c.notes = append(c.notes, msg)
}

// finish stops the churn, judges the end state with the invariant
// checker, the clients and the stable export, and records the row.
func (c *cpFault) finish(ctx context.Context, truth versioned.Interface) {
	t := c.t
	finishChurn(t, ctx, c.f, c.cfg, c.churn, c.watcher, c.keys, &c.res, c.miss)
	// The row's relists are the recorders' completed ones; the
	// ImportWatcher counts its attempts, failed ones included.
	relists := []string{fmt.Sprintf("ImportWatcher %d attempts", c.res.Relists)}
	c.res.Relists = 0
	for _, r := range c.recs {
		got := r.recorded()
		var failures []string
		for _, reason := range sortedKeys(got.failures) {
			failures = append(failures, fmt.Sprintf("%s %d", reason, got.failures[reason]))
		}
		if len(failures) == 0 {
			failures = []string{"none"}
		}
		relists = append(relists, fmt.Sprintf("%s %d (%d attempts, %d watches resumed, %d changes received; requests failed: %s)",
			r.name, got.relists, got.attempts, got.resumes, got.changes, strings.Join(failures, ", ")))
		c.res.Relists = max(c.res.Relists, got.relists)
		if len(got.problems) > 0 {
			c.miss("%s skipped changes: %s", r.name, brief(got.problems))
		}
		if n := got.deleted[c.cfg.Churn.Namespace+"/"+stableName]; n > 0 {
			c.miss("%s saw the stable import deleted %d times: the aggregated API served a list without it", r.name, n)
		}
		start := time.Now()
		if diff := r.matches(ctx, truth, clientResync); diff != "" {
			c.miss("%s does not hold the true set %s after the churn stopped: %s", r.name, clientResync, diff)
		} else if took := time.Since(start); took > time.Second {
			c.note("%s held the true set %s after the checker found the federation converged", r.name, took.Round(time.Millisecond))
		}
	}
	c.note("relists: %s", strings.Join(relists, ", "))
	c.stable.judge(c)
	c.res.Notes = strings.Join(c.notes, "; ")
	Record(t, c.cfg, c.res)
}

// exportStable creates the stable Service and its export in m.
func exportStable(t *testing.T, ctx context.Context, m *framework.Cluster, ns string) {
	t.Helper()
	_, err := m.Kube().CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: stableName},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": stableName},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).Create(ctx, &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Name: stableName},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: "*",
			Rules:              []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/" + m.Name + "/" + stableName, PathType: v1alpha1.PathTypePrefix}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// stableWatch counts what happens, after the syncer wrote them, to the
// objects of the stable export: its import in every other member and its
// Ingress in the exporter. Nothing should: they never need to change.
type stableWatch struct {
	cancel context.CancelFunc

	mu sync.Mutex
	// deleted, added and updated count the events, by "<member>
	// <resource>".
	deleted, added, updated map[string]int
	synced                  bool
}

func watchStable(t *testing.T, ctx context.Context, f *framework.Federation, exporter *framework.Cluster, ns string) *stableWatch {
	t.Helper()
	// Until the syncer has written them.
	for _, m := range f.Members {
		_, err := Until(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
			if m == exporter {
				_, err := m.Kube().NetworkingV1().Ingresses(ns).Get(ctx, syncer.IngressName(stableName), metav1.GetOptions{})
				return err == nil, err
			}
			_, err := m.Fedmesh().FlomeshV1alpha1().ServiceImports(ns).Get(ctx, stableName, metav1.GetOptions{})
			return err == nil, err
		})
		require.NoError(t, err, "the stable export's objects in %s", m.Name)
	}
	s := &stableWatch{deleted: map[string]int{}, added: map[string]int{}, updated: map[string]int{}}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	t.Cleanup(cancel)
	count := func(where string, name func(obj interface{}) string) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj interface{}) {
				if name(obj) == stableName || name(obj) == syncer.IngressName(stableName) {
					s.mu.Lock()
					if s.synced {
						s.added[where]++
					}
					s.mu.Unlock()
				}
			},
			UpdateFunc: func(old, obj interface{}) {
				o, _ := meta.Accessor(old)
				n, _ := meta.Accessor(obj)
				if (name(obj) == stableName || name(obj) == syncer.IngressName(stableName)) && o.GetResourceVersion() != n.GetResourceVersion() {
					s.mu.Lock()
					s.updated[where]++
					s.mu.Unlock()
				}
			},
			DeleteFunc: func(obj interface{}) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if name(obj) == stableName || name(obj) == syncer.IngressName(stableName) {
					s.mu.Lock()
					s.deleted[where]++
					s.mu.Unlock()
				}
			},
		}
	}
	nameOf := func(obj interface{}) string {
		m, err := meta.Accessor(obj)
		if err != nil {
			return ""
		}
		return m.GetName()
	}
	var syncs []cache.InformerSynced
	for _, m := range f.Members {
		if m == exporter {
			factory := kubeinformers.NewSharedInformerFactoryWithOptions(m.Kube(), 0, kubeinformers.WithNamespace(ns))
			inf := factory.Networking().V1().Ingresses().Informer()
			_, err := inf.AddEventHandler(count(m.Name+" ingresses", nameOf))
			require.NoError(t, err)
			factory.Start(runCtx.Done())
			syncs = append(syncs, inf.HasSynced)
			continue
		}
		factory := fedinformers.NewSharedInformerFactoryWithOptions(m.Fedmesh(), 0, fedinformers.WithNamespace(ns))
		inf := factory.Flomesh().V1alpha1().ServiceImports().Informer()
		_, err := inf.AddEventHandler(count(m.Name+" serviceimports", nameOf))
		require.NoError(t, err)
		factory.Start(runCtx.Done())
		syncs = append(syncs, inf.HasSynced)
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	require.True(t, cache.WaitForCacheSync(syncCtx.Done(), syncs...), "the stable export's watches sync")
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	return s
}

// judge fails the fault for every deletion or re-creation of the stable
// objects, and notes their updates.
func (s *stableWatch) judge(c *cpFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, where := range sortedKeys(s.deleted) {
		c.miss("%s: the stable export's object was deleted %d times, and made again %d times", where, s.deleted[where], s.added[where])
	}
	var updates []string
	for _, where := range sortedKeys(s.updated) {
		updates = append(updates, fmt.Sprintf("%s %d", where, s.updated[where]))
	}
	if len(updates) > 0 {
		c.note("the stable export's objects were rewritten: %s", strings.Join(updates, ", "))
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// apiServiceAvailable reports the Available condition the aggregator
// gives fedmesh's APIService.
func apiServiceAvailable(ctx context.Context, f *framework.Federation) (bool, error) {
	dyn, err := dynamic.NewForConfig(f.ControlPlane.Config())
	if err != nil {
		return false, err
	}
	u, err := dyn.Resource(apiServiceGVR).Get(ctx, loopback.APIServiceName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]interface{}); m["type"] == "Available" {
			return m["status"] == "True", nil
		}
	}
	return false, nil
}

// servesAll reports whether client serves the stable import and an
// import of every member: after a restart, the imports of every member
// are back.
func (c *cpFault) servesAll(client versioned.Interface) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		list, err := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		served, stable := map[string]bool{}, false
		for _, imp := range list.Items {
			stable = stable || imp.Namespace == c.cfg.Churn.Namespace && imp.Name == stableName
			for _, p := range imp.Spec.Ports {
				for _, e := range p.Endpoints {
					served[e.ClusterKey] = true
				}
			}
		}
		for _, key := range c.keys {
			if !served[key] {
				return false, nil
			}
		}
		return stable, nil
	}
}

// TestFedmeshAPIServerKill kills fedmesh-apiserver (SIGKILL) while the
// exports churn, restarts it on the same port, and judges what its
// clients and the members went through.
func TestFedmeshAPIServerKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCPFault(t, ctx, "fedmesh-apiserver SIGKILL", nil)
	f := c.f
	server := f.FedmeshServers()[0]
	time.Sleep(c.cfg.Down)

	// The aggregator polls its APIServices' availability: it takes about
	// 20s to say so. The full configuration waits for it; the small one
	// restarts fedmesh-apiserver after cfg.Down, which clients notice at
	// once (503 through the aggregator), and reports the detection only
	// if the aggregator was that quick.
	detectWithin := c.cfg.Down
	if c.cfg.Full {
		detectWithin = 90 * time.Second
	}
	killed := time.Now()
	server.Kill()
	detect, err := Until(ctx, detectWithin, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		ok, err := apiServiceAvailable(ctx, f)
		return err == nil && !ok, err
	})
	switch {
	case err == nil:
		c.res.DetectSeconds = Seconds(detect)
		t.Logf("the APIService is not Available %s after the kill", detect.Round(time.Millisecond))
	case c.cfg.Full:
		c.miss("detect: the aggregator still found the APIService Available: %v", err)
	default:
		c.note("the aggregator did not find the APIService unavailable within the %s outage", detectWithin)
	}
	time.Sleep(max(c.cfg.Down-time.Since(killed), 0))

	// A reader of the replica itself, not through the aggregator, lists
	// from the moment it listens: every list it is served must hold the
	// stable import, the storage refusing (429) until the imports are
	// complete.
	direct := startDirectReader(ctx, server, c.cfg.Churn.Namespace+"/"+stableName)
	restarted := time.Now()
	require.NoError(t, server.Start(ctx))
	t.Logf("fedmesh-apiserver ready and its APIService Available %s after the restart (down %s)",
		time.Since(restarted).Round(time.Millisecond), restarted.Sub(killed).Round(time.Millisecond))
	if _, err := Until(ctx, cpRecoverWithin-time.Since(restarted), 50*time.Millisecond, c.servesAll(f.ControlPlane.Fedmesh())); err != nil {
		c.miss("recover: the aggregated API did not serve every member's imports within %s: %v", cpRecoverWithin, err)
	} else {
		c.res.RecoverSeconds = Seconds(time.Since(restarted))
		t.Logf("every member's imports served %s after the restart", time.Since(restarted).Round(time.Millisecond))
	}
	got := direct.stop()
	if got.served == 0 {
		c.miss("the direct reader was never served a list of the restarted replica: %v", got.lastErr)
	}
	if got.partial > 0 {
		c.miss("the restarted replica served %d of %d lists without the stable import", got.partial, got.served)
	}
	if got.noRetryAfter > 0 {
		c.miss("the restarted replica refused %d lists without a Retry-After", got.noRetryAfter)
	}
	c.note("the restarted replica itself refused %d lists with 429 before serving %d", got.refused, got.served)
	time.Sleep(c.cfg.Down)
	c.finish(ctx, f.ControlPlane.Fedmesh())
}

// directReader lists the imports of one fedmesh-apiserver replica in a
// tight loop, without client-go's retries, and counts what it is served.
type directReader struct {
	done   chan struct{}
	cancel context.CancelFunc
	// Set by the loop, read after done.
	served, partial, refused, noRetryAfter int
	lastErr                                error
}

func startDirectReader(ctx context.Context, server *loopback.FedmeshServer, stable string) *directReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &directReader{done: make(chan struct{}), cancel: cancel}
	cfg := server.Config()
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		r.lastErr = err
		close(r.done)
		return r
	}
	url := cfg.Host + "/apis/" + v1alpha1.SchemeGroupVersion.String() + "/serviceimports"
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			r.read(ctx, client, url, stable)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return r
}

func (r *directReader) read(ctx context.Context, client *http.Client, url, stable string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.lastErr = err
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		// Not listening yet.
		r.lastErr = err
		return
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var list v1alpha1.ServiceImportList
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			r.lastErr = err
			return
		}
		r.served++
		for _, si := range list.Items {
			if si.Namespace+"/"+si.Name == stable {
				return
			}
		}
		r.partial++
	case http.StatusTooManyRequests:
		r.refused++
		if resp.Header.Get("Retry-After") == "" {
			r.noRetryAfter++
		}
	default:
		// A server still starting answers 403 or 503 before its
		// authorization and storage are up.
		r.lastErr = fmt.Errorf("%s", resp.Status)
	}
}

func (r *directReader) stop() *directReader {
	r.cancel()
	<-r.done
	return r
}

// TestFedmeshAPIServerReplicas runs two fedmesh-apiserver replicas behind
// the balancer the APIService points at. The clients of the aggregated
// API are moved from one to the other and back, then one replica is
// killed and restarted: they must never skip a change, and the replicas
// must compute identical imports.
func TestFedmeshAPIServerReplicas(t *testing.T) {
	FullOnly(t, Current())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCPFault(t, ctx, "fedmesh-apiserver replicas switched and one SIGKILLed", func(o *framework.Options) {
		o.FedmeshReplicas = 2
	})
	f := c.f
	servers, bal := f.FedmeshServers(), f.Balancer()
	epochOf := func(ctx context.Context, i int) (uint64, error) {
		_, rv, err := listStates(ctx, servers[i].Fedmesh())
		if err != nil {
			return 0, err
		}
		epoch, _, err := splitVersion(rv)
		return epoch, err
	}
	// moveTo sends every client to replica i and waits until each holds
	// that replica's versions, which it has after a relist there.
	var slowest time.Duration
	moveTo := func(i int) {
		epoch, err := epochOf(ctx, i)
		require.NoError(t, err)
		start := time.Now()
		bal.SwitchTo(i)
		took, err := Until(ctx, cpRecoverWithin, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
			for _, r := range c.recs {
				if r.currentEpoch() != epoch {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			c.miss("the clients did not move to %s within %s", servers[i].Name, cpRecoverWithin)
			return
		}
		slowest = max(slowest, took)
		t.Logf("the clients hold %s's versions %s after the switch", servers[i].Name, time.Since(start).Round(time.Millisecond))
	}

	time.Sleep(c.cfg.Down)
	const switches = 4
	for i := range switches {
		moveTo((i + 1) % 2)
		time.Sleep(c.cfg.Down / 2)
	}

	// One replica dies while both take connections: the balancer finds
	// it refusing and sends its clients to the other, as a Service whose
	// pod died would once the kubelet noticed.
	bal.EnableAll()
	killed := time.Now()
	servers[0].Kill()
	bal.Drain(0)
	time.Sleep(c.cfg.Down)
	restarted := time.Now()
	require.NoError(t, servers[0].Start(ctx))
	readyAfter := time.Since(restarted)
	t.Logf("%s ready %s after its restart (down %s)", servers[0].Name,
		readyAfter.Round(time.Millisecond), restarted.Sub(killed).Round(time.Millisecond))
	// Ready, the restarted replica takes its share of the Service's
	// connections: what it serves at once is what a client that lists
	// then gets. It must be every import the other replica serves
	// (the churn runs, so a change or two may be in flight), not the
	// imports of the members its caches have reached so far.
	if restartedList, _, err := listStates(ctx, servers[0].Fedmesh()); err != nil {
		c.miss("%s, ready, did not list: %v", servers[0].Name, err)
	} else if otherList, _, err := listStates(ctx, servers[1].Fedmesh()); err == nil {
		c.note("%s served %d imports when it became ready, %s %d", servers[0].Name, len(restartedList), servers[1].Name, len(otherList))
		if len(restartedList) < len(otherList)/2 {
			c.miss("%s, ready, served %d imports while %s served %d: a partial list", servers[0].Name, len(restartedList), servers[1].Name, len(otherList))
		}
	}
	if _, err := Until(ctx, max(cpRecoverWithin-time.Since(restarted), time.Second), 50*time.Millisecond, c.servesAll(servers[0].Fedmesh())); err != nil {
		c.miss("recover: %s did not serve every member's imports within %s of its restart: %v", servers[0].Name, cpRecoverWithin, err)
	}
	c.note("%s was ready %s after its restart", servers[0].Name, readyAfter.Round(time.Millisecond))
	// Then every client goes to the restarted replica.
	moveTo(0)
	c.res.RecoverSeconds = Seconds(slowest)
	c.note("the clients held the new replica's versions at most %s after a switch (client-go's reflector backs off after each failed watch)", slowest.Round(time.Millisecond))
	bal.EnableAll()
	time.Sleep(c.cfg.Down)

	c.finish(ctx, f.ControlPlane.Fedmesh())
	// Identical imports: each replica read directly, once the churn has
	// stopped.
	var diff string
	_, err := Until(ctx, c.cfg.ConvergeWithin, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		a, _, err := listStates(ctx, servers[0].Fedmesh())
		if err != nil {
			return false, err
		}
		b, _, err := listStates(ctx, servers[1].Fedmesh())
		if err != nil {
			return false, err
		}
		diff = stateDiff(a, b)
		return diff == "" && len(a) > 0, nil
	})
	if err != nil {
		// Recorded apart: the row is written already.
		t.Errorf("the replicas' imports differ after %s: %s (%v)", c.cfg.ConvergeWithin, diff, err)
		c.res.Passed = false
		c.notes = append(c.notes, "the replicas' imports differ: "+diff)
		c.res.Notes = strings.Join(c.notes, "; ")
		Record(t, c.cfg, c.res)
	}
	for _, s := range servers {
		ch := Checker(f)
		ch.ControlPlane = s.Fedmesh()
		report, _, err := ch.Converge(ctx, c.cfg.ConvergeWithin)
		if err != nil || !report.OK() {
			t.Errorf("%s does not hold the truth: %v\n%s", s.Name, err, report)
		}
	}
}

// TestSyncerLeaderKill runs two fedmesh-syncer replicas and kills the
// leader (SIGKILL) while the exports churn: the other must take over
// within the lease, and between them no write may be lost or made twice.
func TestSyncerLeaderKill(t *testing.T) {
	FullOnly(t, Current())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCPFault(t, ctx, "fedmesh-syncer leader SIGKILL", func(o *framework.Options) {
		o.SyncerReplicas = 2
	})
	f := c.f
	var old *framework.Syncer
	_, err := Until(ctx, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		l, err := f.SyncerLeader(ctx)
		old = l
		return l != nil, err
	})
	require.NoError(t, err, "a syncer leads")
	time.Sleep(c.cfg.Down)

	killed := time.Now()
	old.Kill()
	lease := func(ctx context.Context) (*coordinationv1.Lease, error) {
		ns, name, _ := strings.Cut(framework.SyncerLease, "/")
		return f.ControlPlane.Kube().CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	}
	// The dead leader's last renewal: its lease expires a term later.
	last, err := lease(ctx)
	require.NoError(t, err)
	require.NotNil(t, last.Spec.RenewTime)
	require.NotNil(t, last.Spec.LeaseDurationSeconds)
	term := time.Duration(*last.Spec.LeaseDurationSeconds) * time.Second
	expiry := last.Spec.RenewTime.Add(term)
	var leader *framework.Syncer
	takeover, err := Until(ctx, 30*time.Second, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		l, err := f.SyncerLeader(ctx)
		if err != nil || l == nil || l == old {
			return false, err
		}
		leader = l
		return true, nil
	})
	if err != nil {
		c.miss("detect: no other syncer took the lease: %v", err)
	} else {
		c.res.DetectSeconds = Seconds(takeover)
		now, err := lease(ctx)
		require.NoError(t, err)
		acquired := now.Spec.AcquireTime.Time
		t.Logf("%s took the lease %s after the kill; the dead leader's %s lease expired %s after it, and the takeover came %s after that",
			leader.Name, takeover.Round(time.Millisecond), term, expiry.Sub(killed).Round(time.Millisecond), acquired.Sub(expiry).Round(time.Millisecond))
		if late := acquired.Sub(expiry); late > leaseRetry {
			c.miss("detect: %s took the lease %s after the dead leader's had expired (a retry period is %s)", leader.Name, late.Round(time.Millisecond), leaseRetry)
		}
		if acquired.Before(expiry) {
			c.miss("detect: %s took the lease %s before the dead leader's expired", leader.Name, expiry.Sub(acquired).Round(time.Millisecond))
		}
	}
	if leader != nil {
		_, err := Until(ctx, cpRecoverWithin, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			for _, m := range f.Members {
				v, err := leader.Metric(ctx, "fedmesh_syncer_member_synced", map[string]string{"cluster": m.Name})
				if err != nil || v != 1 {
					return false, err
				}
			}
			return true, nil
		})
		if err != nil {
			c.miss("recover: %s did not sync every member within %s: %v", leader.Name, cpRecoverWithin, err)
		} else {
			c.res.RecoverSeconds = Seconds(time.Since(killed))
			t.Logf("%s synced every member %s after the kill", leader.Name, time.Since(killed).Round(time.Millisecond))
		}
	}
	time.Sleep(c.cfg.Down)
	// The killed replica comes back as the standby.
	require.NoError(t, old.Start(ctx))
	time.Sleep(c.cfg.Down)
	c.finish(ctx, f.ControlPlane.Fedmesh())
}
