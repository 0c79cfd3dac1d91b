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
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
)

// A resourceVersion of fedmesh-apiserver's ServiceImports is
// epoch<<40 | counter (pkg/registry/serviceimport): the epoch is the
// replica's, drawn when it starts, and the counter grows by exactly one
// with each change of its imports. So a watch of every namespace, without
// a selector, must see the counter grow by one from event to event, and a
// bookmark must carry the counter of the last event: a gap is a change
// the client never received. That is what a recorder checks, from the
// outside, on every watch its informer opens.
const rvCounterBits = 40

func splitVersion(rv string) (epoch, counter uint64, err error) {
	v, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("resourceVersion %q: %w", rv, err)
	}
	return v >> rvCounterBits, v & (1<<rvCounterBits - 1), nil
}

// recorder is an informer-style client of ServiceImports: a
// SharedIndexInformer on the generated clientset, whose ListWatch is
// wrapped to count its lists and to check every event of every watch for
// continuity. listThenWatch makes it list and then watch from the list's
// version, as client-go did before streaming lists; otherwise it streams
// its lists (sendInitialEvents), client-go's default since 1.35.
type recorder struct {
	name     string
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}

	mu sync.Mutex
	// fetches counts the full states fetched: lists that succeeded, and
	// watches that asked for the initial events and received them all.
	// The first is the initial sync, the others are relists. attempts
	// counts the tries, failed ones included: a client retries while the
	// server is down.
	fetches, attempts int
	// resumes counts watches resumed from a version.
	resumes int
	// expired counts the 410 Gone answers, to a watch request or within
	// a watch.
	expired int
	// failures counts the failed lists and watches by reason (the API
	// status reason, or "transport" for an error without one).
	failures map[string]int
	// changes counts the changes received within watches.
	changes int
	// problems are the changes skipped and the versions that went back.
	problems []string
	// epoch is that of the replica whose versions the client holds now.
	epoch uint64
	// deleted counts, by namespace/name, the deletions the informer
	// delivered to its handlers, relists included.
	deleted map[string]int
}

// listThenWatch is a ListWatch that says it does not support streaming
// lists, so that the reflector lists, then watches.
type listThenWatch struct{ *cache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// startRecorder starts a recorder with the client configuration cfg and
// waits until it has synced.
func startRecorder(ctx context.Context, name string, cfg *rest.Config, listThen bool) (*recorder, error) {
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	r := &recorder{name: name, done: make(chan struct{}), deleted: map[string]int{}, failures: map[string]int{}}
	imps := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			list, err := imps.List(ctx, o)
			r.mu.Lock()
			defer r.mu.Unlock()
			r.attempts++
			if err == nil && list.Continue == "" {
				r.fetches++
				if epoch, _, err := splitVersion(list.ResourceVersion); err == nil {
					r.epoch = epoch
				}
			}
			r.noteError(err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			s, err := r.newSession(o)
			if err != nil {
				return nil, err
			}
			w, err := imps.Watch(ctx, o)
			if err != nil {
				r.mu.Lock()
				r.noteError(err)
				r.mu.Unlock()
				return nil, err
			}
			return watch.Filter(w, s.observe), nil
		},
	}
	var lwi cache.ListerWatcher = lw
	if listThen {
		lwi = listThenWatch{lw}
	}
	r.informer = cache.NewSharedIndexInformer(lwi, &v1alpha1.ServiceImport{}, 0, cache.Indexers{})
	if _, err := r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj interface{}) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, err := meta.Accessor(obj); err == nil {
				r.mu.Lock()
				r.deleted[m.GetNamespace()+"/"+m.GetName()]++
				r.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.informer.RunWithContext(runCtx)
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), r.informer.HasSynced) {
		r.stop()
		return nil, fmt.Errorf("%s did not sync", name)
	}
	return r, nil
}

func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

// noteError counts a failure, and a 410 Gone apart. Called with r.mu
// held.
func (r *recorder) noteError(err error) {
	if err == nil {
		return
	}
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		r.expired++
	}
	reason := string(apierrors.ReasonForError(err))
	if reason == "" {
		reason = "transport"
	}
	r.failures[reason]++
}

// session is one watch of a recorder: where it started and how far it
// has come.
type session struct {
	r *recorder
	// initial: the watch sends the initial state first, up to the
	// initial-events-end bookmark; its position is known from then on.
	initial bool
	known   bool
	epoch   uint64
	pos     uint64
	// from is the version the watch resumed from, for the problems.
	from string
}

func (r *recorder) newSession(o metav1.ListOptions) (*session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &session{r: r, from: o.ResourceVersion}
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		s.initial = true
		r.attempts++
		return s, nil
	}
	r.resumes++
	if o.ResourceVersion == "" || o.ResourceVersion == "0" {
		// Not what a reflector sends after its list; nothing to check
		// against.
		r.problems = append(r.problems, fmt.Sprintf("%s: a watch from resourceVersion %q", r.name, o.ResourceVersion))
		return s, nil
	}
	epoch, counter, err := splitVersion(o.ResourceVersion)
	if err != nil {
		return nil, err
	}
	s.known, s.epoch, s.pos = true, epoch, counter
	return s, nil
}

// observe checks one event of the watch and passes it on.
func (s *session) observe(ev watch.Event) (watch.Event, bool) {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Type == watch.Error {
		if status, ok := ev.Object.(*metav1.Status); ok {
			r.noteError(&apierrors.StatusError{ErrStatus: *status})
		}
		return ev, true
	}
	m, err := meta.Accessor(ev.Object)
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("%s: %s event without metadata: %v", r.name, ev.Type, err))
		return ev, true
	}
	epoch, counter, err := splitVersion(m.GetResourceVersion())
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("%s: %v", r.name, err))
		return ev, true
	}
	if s.initial && !s.known {
		// The initial state, object by object, all at one version, then
		// the bookmark that ends it.
		if ev.Type == watch.Bookmark && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
			s.known, s.epoch, s.pos = true, epoch, counter
			r.epoch = epoch
			r.fetches++
		}
		return ev, true
	}
	if !s.known {
		return ev, true
	}
	what := fmt.Sprintf("%s: a watch from %s, at %d of epoch %d, received %s %s/%s at %d of epoch %d",
		r.name, s.from, s.pos, s.epoch, ev.Type, m.GetNamespace(), m.GetName(), counter, epoch)
	switch {
	case epoch != s.epoch:
		// A replica answered with another's versions: it must have
		// answered 410 Gone.
		r.problems = append(r.problems, what+": another replica's version")
	case ev.Type == watch.Bookmark && counter < s.pos,
		ev.Type != watch.Bookmark && counter <= s.pos:
		r.problems = append(r.problems, what+": the version went back")
	case ev.Type == watch.Bookmark && counter > s.pos:
		r.problems = append(r.problems, fmt.Sprintf("%s: %d changes skipped (a bookmark past them)", what, counter-s.pos))
	case ev.Type != watch.Bookmark && counter > s.pos+1:
		r.problems = append(r.problems, fmt.Sprintf("%s: %d changes skipped", what, counter-s.pos-1))
	}
	if ev.Type != watch.Bookmark {
		r.changes++
	}
	s.pos = max(s.pos, counter)
	r.epoch = epoch
	return ev, true
}

// recorded is what a recorder saw, for the results.
type recorded struct {
	relists, attempts, resumes, expired, changes int
	problems                                     []string
	deleted, failures                            map[string]int
}

func (r *recorder) recorded() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{
		relists: max(r.fetches-1, 0), attempts: max(r.attempts-1, 0), resumes: r.resumes, expired: r.expired, changes: r.changes,
		problems: append([]string(nil), r.problems...), deleted: maps.Clone(r.deleted), failures: maps.Clone(r.failures),
	}
}

// currentEpoch is the epoch of the replica whose versions the client
// holds now.
func (r *recorder) currentEpoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// importState is an import as the comparisons see it: namespace/name and
// its spec and status, without the versions, which are each replica's
// own.
func importState(imp *v1alpha1.ServiceImport) string {
	b, _ := json.Marshal(struct {
		Spec   v1alpha1.ServiceImportSpec   `json:"spec"`
		Status v1alpha1.ServiceImportStatus `json:"status"`
	}{imp.Spec, imp.Status})
	return imp.Namespace + "/" + imp.Name + " " + string(b)
}

func listStates(ctx context.Context, client versioned.Interface) ([]string, string, error) {
	list, err := client.FlomeshV1alpha1().ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, "", err
	}
	out := make([]string, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, importState(&list.Items[i]))
	}
	sort.Strings(out)
	return out, list.ResourceVersion, nil
}

func (r *recorder) states() []string {
	objs := r.informer.GetStore().List()
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, importState(o.(*v1alpha1.ServiceImport)))
	}
	sort.Strings(out)
	return out
}

// matches waits up to within for the recorder to hold exactly what client
// lists, objects' content included, and returns the difference when it
// does not.
func (r *recorder) matches(ctx context.Context, client versioned.Interface, within time.Duration) string {
	var diff string
	_, err := Until(ctx, within, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		want, _, err := listStates(ctx, client)
		if err != nil {
			return false, err
		}
		diff = stateDiff(want, r.states())
		return diff == "", nil
	})
	if diff == "" && err != nil {
		return err.Error()
	}
	return diff
}

// stateDiff lists what got lacks of want and holds beyond it.
func stateDiff(want, got []string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	for _, s := range got {
		g[s] = true
	}
	var missing, extra []string
	for _, s := range want {
		if !g[s] {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if !w[s] {
			extra = append(extra, s)
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("missing %d: %s; extra %d: %s", len(missing), brief(missing), len(extra), brief(extra))
}

func brief(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], "; ") + fmt.Sprintf("; and %d more", len(s)-5)
	}
	return strings.Join(s, "; ")
}

// TestRecorderFindsSkippedChanges feeds a session the events of watches
// that skip changes, go back, or switch replicas, and ones that do not:
// the check of the fault tests is only worth what it can find.
func TestRecorderFindsSkippedChanges(t *testing.T) {
	const epoch, other = 5, 9
	rv := func(epoch, counter uint64) string { return strconv.FormatUint(epoch<<rvCounterBits|counter, 10) }
	imp := func(typ watch.EventType, epoch, counter uint64, initialEnd bool) watch.Event {
		o := &v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", ResourceVersion: rv(epoch, counter)}}
		if initialEnd {
			o.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
		}
		return watch.Event{Type: typ, Object: o}
	}
	for _, tc := range []struct {
		name     string
		initial  bool
		from     string
		events   []watch.Event
		problems int
	}{
		{name: "resumed, every change", from: rv(epoch, 10), events: []watch.Event{
			imp(watch.Added, epoch, 11, false), imp(watch.Modified, epoch, 12, false), imp(watch.Bookmark, epoch, 12, false), imp(watch.Deleted, epoch, 13, false),
		}},
		{name: "resumed, one skipped", from: rv(epoch, 10), events: []watch.Event{
			imp(watch.Added, epoch, 11, false), imp(watch.Modified, epoch, 13, false),
		}, problems: 1},
		{name: "a bookmark past a change", from: rv(epoch, 10), events: []watch.Event{
			imp(watch.Added, epoch, 11, false), imp(watch.Bookmark, epoch, 12, false),
		}, problems: 1},
		{name: "the version goes back", from: rv(epoch, 10), events: []watch.Event{
			imp(watch.Added, epoch, 11, false), imp(watch.Modified, epoch, 11, false),
		}, problems: 1},
		{name: "another replica's versions", from: rv(epoch, 10), events: []watch.Event{
			imp(watch.Added, other, 11, false),
		}, problems: 1},
		{name: "initial events, then every change", initial: true, events: []watch.Event{
			imp(watch.Added, epoch, 20, false), imp(watch.Added, epoch, 20, false), imp(watch.Bookmark, epoch, 20, true), imp(watch.Modified, epoch, 21, false),
		}},
		{name: "initial events, then a gap", initial: true, events: []watch.Event{
			imp(watch.Added, epoch, 20, false), imp(watch.Bookmark, epoch, 20, true), imp(watch.Modified, epoch, 22, false),
		}, problems: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{name: "test", deleted: map[string]int{}, failures: map[string]int{}}
			o := metav1.ListOptions{ResourceVersion: tc.from}
			if tc.initial {
				o.SendInitialEvents = ptr.To(true)
			}
			s, err := r.newSession(o)
			require.NoError(t, err)
			for _, ev := range tc.events {
				s.observe(ev)
			}
			got := r.recorded()
			assert.Len(t, got.problems, tc.problems, "%v", got.problems)
		})
	}
}
