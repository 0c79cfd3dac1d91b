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
// Package serviceimport serves ServiceImports: computed from the member
// clusters, held in memory, never stored in etcd, and read only.
package serviceimport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"
	"unsafe"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

// A resourceVersion of this server is epoch<<counterBits | counter: the
// epoch is drawn at random when the server starts, the counter counts the
// aggregate's changes. Two replicas behind one Service compute the same
// objects but count their changes independently, so a version is only
// meaningful to the replica that issued it. A watch or get that brings a
// version of another epoch is answered 410 Gone, and the client relists:
// it may re-receive objects it has, but never silently skips a change.
const (
	counterBits = 40
	counterMask = 1<<counterBits - 1
	epochBits   = 20
)

// DefaultHistory is how many changes the aggregate keeps, at most, for
// watches that resume from an older version.
const DefaultHistory = 10000

// DefaultHistoryBytes bounds the estimated size of the objects the history
// of changes holds. An import lists every exporting cluster's endpoints and
// conditions, so a single one may take megabytes: counting changes alone,
// 10,000 of them could hold gigabytes. 64 MiB keeps the full 10,000 changes
// of imports of a few kilobytes, the common case, and fewer of larger ones;
// a watch that resumes from a version no longer kept is answered 410 Gone
// and relists, as with kube-apiserver's watch cache.
const DefaultHistoryBytes = 64 << 20

// minShrink is the fewest imports whose room the aggregate gives back:
// below, a map costs little, and making it anew would cost more.
const minShrink = 1024

// watcherBuffer is how many changes a slow watcher may lag before it is
// ended; its client resumes from its last version.
const watcherBuffer = 1024

// DefaultBookmarkInterval is how often a watch that allows bookmarks gets
// one, as kube-apiserver's watch cache sends them.
const DefaultBookmarkInterval = 30 * time.Second

type key struct{ namespace, name string }

type event struct {
	typ watch.EventType
	rv  uint64
	obj *flomesh.ServiceImport
	// size is the estimated size of obj, counted against the history's
	// byte budget.
	size int64
}

// Aggregate holds the current ServiceImports of the federation and the
// recent history of their changes. Objects handed to it are never mutated
// afterwards; readers get copies.
type Aggregate struct {
	epoch   uint64
	history int

	// BookmarkInterval is how often a watch that allows bookmarks gets
	// one. Set it before the first Watch; tests shorten it.
	BookmarkInterval time.Duration
	// HistoryBytes bounds the estimated size of the objects the history
	// holds; the oldest changes are dropped first. The newest change is
	// always kept, whatever its size. Set it before the first change.
	HistoryBytes int64

	mu      sync.RWMutex
	counter uint64
	items   map[key]*flomesh.ServiceImport
	// peak is the most items held since items was made: a Go map keeps
	// the room of its largest size, so once it holds a quarter of that,
	// it is made anew.
	peak int
	// events is a ring buffer of the last changes, at most history of
	// them and of HistoryBytes in all: n events from head on, taking
	// bytes. It grows as changes come, up to history entries.
	events []event
	head   int
	n      int
	bytes  int64
	// oldest is the counter of the oldest change still in events, or the
	// next counter when events is empty: a watch may resume from
	// oldest-1 on.
	oldest   uint64
	watchers map[*watcher]struct{}
}

// NewAggregate returns an empty aggregate keeping at most history changes,
// of at most DefaultHistoryBytes.
func NewAggregate(history int) *Aggregate {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random epoch: %v", err))
	}
	epoch := binary.BigEndian.Uint64(b[:])&(1<<epochBits-1) | 1
	return &Aggregate{
		epoch:            epoch,
		history:          max(history, 1),
		BookmarkInterval: DefaultBookmarkInterval,
		HistoryBytes:     DefaultHistoryBytes,
		items:            map[key]*flomesh.ServiceImport{},
		events:           make([]event, min(max(history, 1), 1024)),
		oldest:           1,
		watchers:         map[*watcher]struct{}{},
	}
}

func (a *Aggregate) version(counter uint64) string {
	return strconv.FormatUint(a.epoch<<counterBits|counter, 10)
}

// parseVersion returns the counter of a version this aggregate issued, or
// a 410 Gone error for one it did not.
func (a *Aggregate) parseVersion(rv string) (uint64, error) {
	v, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersion %q", rv))
	}
	if v>>counterBits != a.epoch {
		return 0, apierrors.NewResourceExpired(fmt.Sprintf(
			"resourceVersion %s was issued by another fedmesh-apiserver replica or before a restart; list again", rv))
	}
	return v & counterMask, nil
}

// Set stores obj as the import of its namespace/name, unless an equal one
// is stored already. It returns whether anything changed.
func (a *Aggregate) Set(obj *flomesh.ServiceImport, equal func(a, b *flomesh.ServiceImport) bool) bool {
	k := key{obj.Namespace, obj.Name}
	a.mu.Lock()
	defer a.mu.Unlock()
	old, exists := a.items[k]
	if exists && equal(old, obj) {
		return false
	}
	a.counter++
	obj.ResourceVersion = a.version(a.counter)
	a.items[k] = obj
	a.peak = max(a.peak, len(a.items))
	typ := watch.Added
	if exists {
		typ = watch.Modified
	}
	a.record(event{typ: typ, rv: a.counter, obj: obj})
	return true
}

// Delete removes the import of namespace/name, if there is one.
func (a *Aggregate) Delete(namespace, name string) bool {
	k := key{namespace, name}
	a.mu.Lock()
	defer a.mu.Unlock()
	old, exists := a.items[k]
	if !exists {
		return false
	}
	a.counter++
	delete(a.items, k)
	if a.peak >= minShrink && len(a.items) <= a.peak/4 {
		// The imports of a departed member, or of a namespace that no
		// longer federates, are gone: so goes their room. Each import is
		// copied once for every three deleted.
		items := make(map[key]*flomesh.ServiceImport, len(a.items))
		for k, v := range a.items {
			items[k] = v
		}
		a.items, a.peak = items, len(items)
	}
	gone := old.DeepCopy()
	gone.ResourceVersion = a.version(a.counter)
	a.record(event{typ: watch.Deleted, rv: a.counter, obj: gone})
	return true
}

// record appends an event to the history, drops the oldest ones beyond
// its bounds, and hands the event to every watcher. Called with a.mu held
// for writing.
func (a *Aggregate) record(ev event) {
	ev.size = importSize(ev.obj)
	if a.n == a.history {
		a.dropOldest()
	}
	if a.n == len(a.events) {
		// Grow the ring, oldest first, up to history entries.
		grown := make([]event, min(2*len(a.events), a.history))
		for i := range a.n {
			grown[i] = a.events[(a.head+i)%len(a.events)]
		}
		a.events, a.head = grown, 0
	}
	a.events[(a.head+a.n)%len(a.events)] = ev
	a.n++
	a.bytes += ev.size
	for a.n > 1 && a.bytes > a.HistoryBytes {
		a.dropOldest()
	}
	a.oldest = a.events[a.head].rv
	for w := range a.watchers {
		select {
		case w.input <- ev:
		default:
			// A watcher this far behind would hold the aggregate back; end
			// it, and its client resumes from its last version.
			klog.V(2).InfoS("Ending a slow serviceimports watch", "buffer", watcherBuffer)
			delete(a.watchers, w)
			close(w.input)
		}
	}
}

// Get returns a copy of the import of namespace/name.
func (a *Aggregate) Get(namespace, name string) (*flomesh.ServiceImport, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	obj, ok := a.items[key{namespace, name}]
	if !ok {
		return nil, false
	}
	return obj.DeepCopy(), true
}

// List returns the imports that match, sorted by namespace and
// name, and the version of the aggregate they were read at.
func (a *Aggregate) List(namespace string, pred storage.SelectionPredicate) ([]flomesh.ServiceImport, string, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	items := make([]flomesh.ServiceImport, 0, len(a.items))
	for k, obj := range a.items {
		if namespace != "" && k.namespace != namespace {
			continue
		}
		if ok, err := pred.Matches(obj); err != nil {
			return nil, "", err
		} else if ok {
			// A shallow copy: stored objects are never mutated (Set
			// replaces them), and the API server only reads a list it
			// serves, so copying 10,000 deep would be pure cost.
			items = append(items, *obj)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	return items, a.version(a.counter), nil
}

// Len is the number of imports.
func (a *Aggregate) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.items)
}

// watchOptions say where a watch starts and what it sees.
type watchOptions struct {
	namespace string
	pred      storage.SelectionPredicate
	// resourceVersion as the client sent it: "" or "0" start from the
	// current state, any other value resumes after that version.
	resourceVersion   string
	sendInitialEvents bool
	bookmarks         bool
}

// Watch starts a watch. Its events are filtered by namespace and predicate.
func (a *Aggregate) Watch(ctx context.Context, opts watchOptions) (watch.Interface, error) {
	var resumeAfter uint64
	initialState := opts.sendInitialEvents || opts.resourceVersion == "" || opts.resourceVersion == "0"
	if !initialState {
		var err error
		if resumeAfter, err = a.parseVersion(opts.resourceVersion); err != nil {
			return nil, err
		}
	}

	w := &watcher{
		opts:   opts,
		agg:    a,
		input:  make(chan event, watcherBuffer),
		result: make(chan watch.Event),
		done:   make(chan struct{}),
	}
	a.mu.Lock()
	var backlog []event
	var initialRV uint64
	if initialState {
		initialRV = a.counter
		backlog = make([]event, 0, len(a.items))
		for _, obj := range a.items {
			backlog = append(backlog, event{typ: watch.Added, rv: a.counter, obj: obj})
		}
		sort.Slice(backlog, func(i, j int) bool {
			return backlog[i].obj.Namespace+"/"+backlog[i].obj.Name < backlog[j].obj.Namespace+"/"+backlog[j].obj.Name
		})
	} else {
		if resumeAfter+1 < a.oldest {
			a.mu.Unlock()
			return nil, apierrors.NewResourceExpired(fmt.Sprintf(
				"too old resource version: %s (oldest kept: %s)", opts.resourceVersion, a.version(a.oldest)))
		}
		if resumeAfter > a.counter {
			a.mu.Unlock()
			return nil, apierrors.NewTimeoutError(fmt.Sprintf(
				"resourceVersion %s is newer than this server's %s", opts.resourceVersion, a.version(a.counter)), 1)
		}
		backlog = a.eventsAfter(resumeAfter)
	}
	a.watchers[w] = struct{}{}
	a.mu.Unlock()

	// As the watch cache does, the initial-events-end bookmark goes only to
	// clients that allow bookmarks: the API server defaults
	// sendInitialEvents for plain watches too, and only a watch-list
	// request (both set) is ready for the bookmark.
	//
	// A resumed watch starts from the version the client brought: a
	// bookmark must never send the client back to an older version than
	// it already has, or its next reconnect replays the history again.
	start := initialRV
	if !initialState {
		start = resumeAfter
	}
	go w.run(ctx, backlog, initialState && opts.sendInitialEvents && opts.bookmarks, start)
	return w, nil
}

// dropOldest forgets the oldest event of the history, letting go of its
// object. Called with a.mu held for writing and a.n > 0.
func (a *Aggregate) dropOldest() {
	a.bytes -= a.events[a.head].size
	a.events[a.head] = event{}
	a.head = (a.head + 1) % len(a.events)
	a.n--
}

// eventsAfter returns the recorded events newer than counter, oldest first.
// Called with a.mu held.
func (a *Aggregate) eventsAfter(counter uint64) []event {
	var out []event
	for i := range a.n {
		if ev := a.events[(a.head+i)%len(a.events)]; ev.rv > counter {
			out = append(out, ev)
		}
	}
	return out
}

// Sizes, in memory, of what an import is made of, for importSize.
const (
	stringSize    = int64(unsafe.Sizeof(""))
	importSize0   = int64(unsafe.Sizeof(flomesh.ServiceImport{}))
	portSize      = int64(unsafe.Sizeof(flomesh.ServicePort{}))
	endpointSize  = int64(unsafe.Sizeof(flomesh.Endpoint{}))
	clusterSize   = int64(unsafe.Sizeof(flomesh.SourceStatus{}))
	exportSize    = int64(unsafe.Sizeof(flomesh.ExportStatus{}))
	conditionSize = int64(unsafe.Sizeof(metav1.Condition{}))
	ownerRefSize  = int64(unsafe.Sizeof(metav1.OwnerReference{}))
	fieldsSize    = int64(unsafe.Sizeof(metav1.ManagedFieldsEntry{}))
	// mapEntrySize is what a map entry of two strings costs besides the
	// strings' bytes: the two headers and the map's own share.
	mapEntrySize = 2*stringSize + 16
)

// importSize estimates the memory an import holds: its structs and the
// bytes of its strings, walked field by field. It runs once per change,
// under the aggregate's lock, so it allocates nothing and encodes nothing;
// strings shared with other objects are counted all the same, which only
// errs towards dropping history early.
func importSize(si *flomesh.ServiceImport) int64 {
	n := importSize0
	m := &si.ObjectMeta
	n += int64(len(m.Name) + len(m.GenerateName) + len(m.Namespace) + len(m.UID) + len(m.ResourceVersion))
	for k, v := range m.Labels {
		n += mapEntrySize + int64(len(k)+len(v))
	}
	for k, v := range m.Annotations {
		n += mapEntrySize + int64(len(k)+len(v))
	}
	for _, r := range m.OwnerReferences {
		n += ownerRefSize + int64(len(r.APIVersion)+len(r.Kind)+len(r.Name)+len(r.UID))
	}
	for _, f := range m.Finalizers {
		n += stringSize + int64(len(f))
	}
	for _, f := range m.ManagedFields {
		n += fieldsSize + int64(len(f.Manager)+len(f.Operation)+len(f.APIVersion)+len(f.FieldsType)+len(f.Subresource))
		if f.FieldsV1 != nil {
			n += int64(len(f.FieldsV1.Raw))
		}
	}
	spec := &si.Spec
	for _, p := range spec.Ports {
		n += portSize + int64(len(p.Name)+len(p.Protocol))
		if p.AppProtocol != nil {
			n += stringSize + int64(len(*p.AppProtocol))
		}
		for _, e := range p.Endpoints {
			n += endpointSize + int64(len(e.ClusterKey)+len(e.Target.Host)+len(e.Target.IP)+len(e.Target.Path))
		}
	}
	for _, ip := range spec.IPs {
		n += stringSize + int64(len(ip))
	}
	n += int64(len(spec.Type) + len(spec.SessionAffinity) + len(spec.ServiceAccountName))
	if spec.SessionAffinityConfig != nil {
		n += 32
	}
	for _, c := range si.Status.Clusters {
		n += clusterSize + int64(len(c.Cluster))
		for _, a := range c.Addresses {
			n += stringSize + int64(len(a))
		}
	}
	for _, e := range si.Status.Exports {
		n += exportSize + int64(len(e.Cluster))
		for _, c := range e.Conditions {
			n += conditionSize + int64(len(c.Type)+len(c.Status)+len(c.Reason)+len(c.Message))
		}
	}
	return n
}

func (a *Aggregate) removeWatcher(w *watcher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.watchers[w]; ok {
		delete(a.watchers, w)
		close(w.input)
	}
}

// watcher is one client's watch.
type watcher struct {
	opts   watchOptions
	agg    *Aggregate
	input  chan event
	result chan watch.Event
	done   chan struct{}
	once   sync.Once
}

// Stop implements watch.Interface.
func (w *watcher) Stop() {
	w.once.Do(func() { close(w.done) })
}

// ResultChan implements watch.Interface.
func (w *watcher) ResultChan() <-chan watch.Event { return w.result }

// run sends the backlog, then live events and periodic bookmarks. last is
// the version the client holds when the watch starts; it only grows, with
// every event the watch passes, sent or filtered out, so a bookmark never
// carries a version older than the last event sent.
func (w *watcher) run(ctx context.Context, backlog []event, endBookmark bool, last uint64) {
	defer close(w.result)
	defer w.agg.removeWatcher(w)

	for _, ev := range backlog {
		last = max(last, ev.rv)
		if !w.send(ctx, ev) {
			return
		}
	}
	if endBookmark {
		// Informers that ask for the initial events wait for this
		// bookmark to know the state is complete.
		bm := w.bookmark(last)
		if err := storage.AnnotateInitialEventsEndBookmark(bm); err != nil {
			return
		}
		if !w.emit(ctx, watch.Event{Type: watch.Bookmark, Object: bm}) {
			return
		}
	}
	var tick <-chan time.Time
	if w.opts.bookmarks {
		t := time.NewTicker(w.agg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case ev, ok := <-w.input:
			if !ok {
				return
			}
			last = max(last, ev.rv)
			if !w.send(ctx, ev) {
				return
			}
		case <-tick:
			if !w.emit(ctx, watch.Event{Type: watch.Bookmark, Object: w.bookmark(last)}) {
				return
			}
		case <-w.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (w *watcher) bookmark(counter uint64) *flomesh.ServiceImport {
	bm := &flomesh.ServiceImport{}
	bm.ResourceVersion = w.agg.version(counter)
	return bm
}

// send filters an event and emits a copy of its object.
func (w *watcher) send(ctx context.Context, ev event) bool {
	if w.opts.namespace != "" && ev.obj.Namespace != w.opts.namespace {
		return true
	}
	if ok, err := w.opts.pred.Matches(ev.obj); err != nil || !ok {
		return true
	}
	return w.emit(ctx, watch.Event{Type: ev.typ, Object: ev.obj.DeepCopy()})
}

func (w *watcher) emit(ctx context.Context, ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-w.done:
		return false
	case <-ctx.Done():
		return false
	}
}
