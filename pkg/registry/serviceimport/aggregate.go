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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// DefaultHistory is how many changes the aggregate keeps for watches that
// resume from an older version.
const DefaultHistory = 10000

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

	mu       sync.RWMutex
	counter  uint64
	items    map[key]*flomesh.ServiceImport
	events   []event // ring buffer of the last history changes
	next     int     // where the next event goes in events
	oldest   uint64  // counter of the oldest change still in events
	watchers map[*watcher]struct{}
}

// NewAggregate returns an empty aggregate keeping history changes.
func NewAggregate(history int) *Aggregate {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random epoch: %v", err))
	}
	epoch := binary.BigEndian.Uint64(b[:])&(1<<epochBits-1) | 1
	return &Aggregate{
		epoch:            epoch,
		history:          history,
		BookmarkInterval: DefaultBookmarkInterval,
		items:            map[key]*flomesh.ServiceImport{},
		events:           make([]event, 0, min(history, 1024)),
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
	gone := old.DeepCopy()
	gone.ResourceVersion = a.version(a.counter)
	a.record(event{typ: watch.Deleted, rv: a.counter, obj: gone})
	return true
}

// record appends an event to the history and hands it to every watcher.
// Called with a.mu held for writing.
func (a *Aggregate) record(ev event) {
	if len(a.events) < a.history {
		a.events = append(a.events, ev)
	} else {
		a.events[a.next] = ev
		a.oldest = a.events[(a.next+1)%a.history].rv
	}
	a.next = (a.next + 1) % a.history
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

// eventsAfter returns the recorded events newer than counter, oldest first.
// Called with a.mu held.
func (a *Aggregate) eventsAfter(counter uint64) []event {
	var out []event
	start := 0
	if len(a.events) == a.history {
		// The ring has wrapped: the oldest event is the next to overwrite.
		start = a.next
	}
	for i := range a.events {
		if ev := a.events[(start+i)%len(a.events)]; ev.rv > counter {
			out = append(out, ev)
		}
	}
	return out
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
