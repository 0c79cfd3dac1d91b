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
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/members"
	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/invariant"
)

// IngressClass is the --ingress-class the loopback federations give
// fedmesh-syncer.
const IngressClass = "pipy"

// FederationOptions are the options of a suite's federation: the
// configuration's members, fedmesh-syncer, and fedmesh-apiserver with the
// configuration's grace.
func FederationOptions(cfg Config) framework.Options {
	return framework.Options{
		Members:     cfg.Members,
		WithSyncer:  true,
		FedmeshArgs: []string{fmt.Sprintf("--member-unavailable-grace=%s", cfg.Grace)},
	}
}

// RegisterMembers registers every member with its admin kubeconfig
// inline, gateway 127.0.0.1:81, :82..., and waits until each is Ready.
func RegisterMembers(t testing.TB, ctx context.Context, f *framework.Federation) {
	t.Helper()
	for i, m := range f.Members {
		kc, err := m.Kubeconfig()
		require.NoError(t, err)
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name},
			Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", GatewayPort: int32(81 + i), Kubeconfig: string(kc)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for _, m := range f.Members {
		_, err := WaitCluster(ctx, f, m.Name, 60*time.Second, IsReady(metav1.ConditionTrue, ""))
		require.NoError(t, err)
	}
}

// Keys returns the cluster key of every member, by name, as their
// Clusters give them.
func Keys(ctx context.Context, f *framework.Federation) (map[string]string, error) {
	list, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, c := range list.Items {
		keys[c.Name] = members.Key(c.Name, &c.Spec)
	}
	return keys, nil
}

// Checker is the invariant checker of the federation: its control plane
// through the aggregator, every member as its admin. Withdrawn members
// are left out of the truth.
func Checker(f *framework.Federation, withdrawn ...string) *invariant.Checker {
	c := &invariant.Checker{ControlPlane: f.ControlPlane.Fedmesh(), IngressClass: IngressClass, Withdrawn: withdrawn}
	for _, m := range f.Members {
		c.Members = append(c.Members, invariant.Member{Name: m.Name, Kube: m.Kube(), Fedmesh: m.Fedmesh()})
	}
	return c
}

// Converge asserts that the federation holds exactly the truth within the
// configuration's bound, and returns the report and how long it took.
func Converge(t testing.TB, ctx context.Context, f *framework.Federation, cfg Config) (*invariant.Report, time.Duration) {
	t.Helper()
	r, took, err := Checker(f).Converge(ctx, cfg.ConvergeWithin)
	if err != nil {
		t.Errorf("checking the invariant: %v", err)
	}
	if !r.OK() {
		t.Errorf("the federation did not hold the truth within %s:\n%s", cfg.ConvergeWithin, r)
	} else {
		t.Logf("converged in %s: %s", took.Round(time.Millisecond), r)
	}
	return r, took
}

// ClusterCheck judges a Cluster's Ready condition (nil when it has none).
type ClusterCheck func(*metav1.Condition) bool

// IsReady is a ClusterCheck for a Ready condition of status and, unless
// empty, reason.
func IsReady(status metav1.ConditionStatus, reason string) ClusterCheck {
	return func(c *metav1.Condition) bool {
		return c != nil && c.Status == status && (reason == "" || c.Reason == reason)
	}
}

// WaitCluster polls a Cluster's Ready condition every 50ms until check
// passes, and returns how long that took. It fails after within, saying
// what the condition was.
func WaitCluster(ctx context.Context, f *framework.Federation, name string, within time.Duration, check ClusterCheck) (time.Duration, error) {
	start := time.Now()
	var last *metav1.Condition
	var lastErr error
	client := f.ControlPlane.Fedmesh()
	for time.Since(start) < within {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cl, err := client.FlomeshV1alpha1().Clusters().Get(reqCtx, name, metav1.GetOptions{})
		cancel()
		if err == nil {
			last, lastErr = meta.FindStatusCondition(cl.Status.Conditions, "Ready"), nil
			if check(last) {
				return time.Since(start), nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if lastErr != nil {
		return time.Since(start), fmt.Errorf("cluster %s: not as expected within %s: %w", name, within, lastErr)
	}
	if last == nil {
		return time.Since(start), fmt.Errorf("cluster %s: no Ready condition within %s", name, within)
	}
	return time.Since(start), fmt.Errorf("cluster %s: not as expected within %s: Ready=%s, reason %s: %s", name, within, last.Status, last.Reason, last.Message)
}

// Until polls cond every poll until it returns true, and returns how long
// that took; it fails after within.
func Until(ctx context.Context, within, poll time.Duration, cond func(ctx context.Context) (bool, error)) (time.Duration, error) {
	start := time.Now()
	var lastErr error
	for time.Since(start) < within {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := cond(reqCtx)
		cancel()
		if ok {
			return time.Since(start), nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(poll):
		}
	}
	return time.Since(start), fmt.Errorf("not within %s (last error: %v)", within, lastErr)
}

// ServedBy returns the control-plane imports that list an endpoint of the
// cluster key, as namespace/name.
func ServedBy(ctx context.Context, client versioned.Interface, key string) ([]string, error) {
	list, err := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, imp := range list.Items {
	ports:
		for _, p := range imp.Spec.Ports {
			for _, e := range p.Endpoints {
				if e.ClusterKey == key {
					out = append(out, imp.Namespace+"/"+imp.Name)
					break ports
				}
			}
		}
	}
	return out, nil
}

// ImportWatcher is an informer-style client of the control plane's
// ServiceImports: a reflector that lists and then watches, with
// bookmarks, relisting when its watch cannot resume. It counts its lists.
type ImportWatcher struct {
	informer cache.SharedIndexInformer
	lists    atomic.Int64
	watches  atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
}

// WatchImports starts an ImportWatcher with the client configuration cfg
// (the control plane's, through the aggregator, or a replica's) and waits
// until it has synced.
func WatchImports(ctx context.Context, cfg *rest.Config) (*ImportWatcher, error) {
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	w := &ImportWatcher{done: make(chan struct{})}
	imps := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			w.lists.Add(1)
			return imps.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				// A watch-list stream is the list of a client that
				// streams it.
				w.lists.Add(1)
			} else {
				w.watches.Add(1)
			}
			return imps.Watch(ctx, o)
		},
	}
	w.informer = cache.NewSharedIndexInformer(lw, &v1alpha1.ServiceImport{}, 0, cache.Indexers{})
	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.informer.RunWithContext(runCtx)
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), w.informer.HasSynced) {
		w.Stop()
		return nil, fmt.Errorf("the ServiceImport informer did not sync")
	}
	return w, nil
}

// Relists is how many times the watcher listed after its first list.
func (w *ImportWatcher) Relists() int { return int(max(w.lists.Load()-1, 0)) }

// Keys lists namespace/name of the imports the watcher holds, with the
// cluster keys of their endpoints: "ns/name=key1,key2".
func (w *ImportWatcher) Keys() []string {
	var out []string
	for _, o := range w.informer.GetStore().List() {
		out = append(out, describe(o.(*v1alpha1.ServiceImport)))
	}
	sort.Strings(out)
	return out
}

// Matches waits up to within for the watcher to hold what the control
// plane lists, and returns the difference when it does not.
func (w *ImportWatcher) Matches(ctx context.Context, client versioned.Interface, within time.Duration) (string, error) {
	var diff string
	_, err := Until(ctx, within, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		list, err := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var want []string
		for i := range list.Items {
			want = append(want, describe(&list.Items[i]))
		}
		sort.Strings(want)
		got := w.Keys()
		if strings.Join(want, " ") == strings.Join(got, " ") {
			diff = ""
			return true, nil
		}
		diff = fmt.Sprintf("watcher holds %v, the control plane lists %v", got, want)
		return false, nil
	})
	if diff != "" {
		return diff, nil
	}
	return "", err
}

// Stop stops the watcher.
func (w *ImportWatcher) Stop() {
	w.cancel()
	<-w.done
}

func describe(imp *v1alpha1.ServiceImport) string {
	keys := map[string]bool{}
	for _, p := range imp.Spec.Ports {
		for _, e := range p.Endpoints {
			keys[e.ClusterKey] = true
		}
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return imp.Namespace + "/" + imp.Name + "=" + strings.Join(ks, ",")
}
