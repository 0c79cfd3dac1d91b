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
package serviceimport

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/storage"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

func imp(ns, name string, port int32) *flomesh.ServiceImport {
	return &flomesh.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{{Port: port, Protocol: "TCP"}}},
	}
}

func equalSpec(a, b *flomesh.ServiceImport) bool {
	return apiequality.Semantic.DeepEqual(a.Spec, b.Spec)
}

var everything = storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything(), GetAttrs: getAttrs}

func next(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		require.True(t, ok, "watch ended early")
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return watch.Event{}
	}
}

func TestSetIsIdempotentAndVersioned(t *testing.T) {
	a := NewAggregate(10)
	assert.True(t, a.Set(imp("ns", "a", 80), equalSpec))
	first, _ := a.Get("ns", "a")
	assert.False(t, a.Set(imp("ns", "a", 80), equalSpec), "an equal import is no change")
	again, _ := a.Get("ns", "a")
	assert.Equal(t, first.ResourceVersion, again.ResourceVersion)
	assert.True(t, a.Set(imp("ns", "a", 81), equalSpec))
	changed, _ := a.Get("ns", "a")
	assert.NotEqual(t, first.ResourceVersion, changed.ResourceVersion)
	assert.True(t, a.Delete("ns", "a"))
	assert.False(t, a.Delete("ns", "a"))
	_, ok := a.Get("ns", "a")
	assert.False(t, ok)
}

func TestListFiltersAndSorts(t *testing.T) {
	a := NewAggregate(10)
	b := imp("ns2", "b", 80)
	b.Labels = map[string]string{"app": "b"}
	a.Set(b, equalSpec)
	a.Set(imp("ns1", "z", 80), equalSpec)
	a.Set(imp("ns1", "a", 80), equalSpec)

	items, rv, err := a.List("", everything)
	require.NoError(t, err)
	require.Len(t, items, 3)
	assert.Equal(t, []string{"ns1/a", "ns1/z", "ns2/b"}, []string{
		items[0].Namespace + "/" + items[0].Name, items[1].Namespace + "/" + items[1].Name, items[2].Namespace + "/" + items[2].Name})
	assert.NotEmpty(t, rv)

	items, _, err = a.List("ns1", everything)
	require.NoError(t, err)
	assert.Len(t, items, 2)

	byLabel := everything
	byLabel.Label = labels.SelectorFromSet(labels.Set{"app": "b"})
	items, _, err = a.List("", byLabel)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, "b", items[0].Name)

	byName := everything
	byName.Field = fields.OneTermEqualSelector("metadata.name", "z")
	items, _, err = a.List("", byName)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, "z", items[0].Name)
}

func TestWatchResumesFromHistory(t *testing.T) {
	a := NewAggregate(100)
	a.Set(imp("ns", "a", 80), equalSpec)
	_, rv, _ := a.List("", everything)
	a.Set(imp("ns", "b", 80), equalSpec)
	a.Set(imp("ns", "a", 81), equalSpec)
	a.Delete("ns", "b")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.Watch(ctx, watchOptions{pred: everything, resourceVersion: rv})
	require.NoError(t, err)
	defer w.Stop()
	for _, want := range []struct {
		typ  watch.EventType
		name string
	}{{watch.Added, "b"}, {watch.Modified, "a"}, {watch.Deleted, "b"}} {
		ev := next(t, w)
		assert.Equal(t, want.typ, ev.Type)
		assert.Equal(t, want.name, ev.Object.(*flomesh.ServiceImport).Name)
	}
	// And live events follow.
	a.Set(imp("ns", "c", 80), equalSpec)
	ev := next(t, w)
	assert.Equal(t, watch.Added, ev.Type)
	assert.Equal(t, "c", ev.Object.(*flomesh.ServiceImport).Name)
}

func TestWatchTooOldOrForeignVersionIsGone(t *testing.T) {
	a := NewAggregate(3)
	a.Set(imp("ns", "a", 80), equalSpec)
	_, old, _ := a.List("", everything)
	for port := int32(81); port < 90; port++ {
		a.Set(imp("ns", "a", port), equalSpec)
	}
	_, err := a.Watch(context.Background(), watchOptions{pred: everything, resourceVersion: old})
	assert.True(t, apierrors.IsResourceExpired(err), "a version older than the history: want 410, got %v", err)

	other := NewAggregate(3)
	other.Set(imp("ns", "a", 80), equalSpec)
	_, foreign, _ := other.List("", everything)
	_, err = a.Watch(context.Background(), watchOptions{pred: everything, resourceVersion: foreign})
	assert.True(t, apierrors.IsResourceExpired(err), "another replica's version: want 410, got %v", err)

	_, err = a.Watch(context.Background(), watchOptions{pred: everything, resourceVersion: "abc"})
	assert.True(t, apierrors.IsBadRequest(err), "want 400, got %v", err)
}

func TestWatchSendInitialEventsEndsWithBookmark(t *testing.T) {
	a := NewAggregate(10)
	a.Set(imp("ns", "a", 80), equalSpec)
	a.Set(imp("other", "b", 80), equalSpec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.Watch(ctx, watchOptions{namespace: "ns", pred: everything, sendInitialEvents: true, bookmarks: true})
	require.NoError(t, err)
	defer w.Stop()

	ev := next(t, w)
	assert.Equal(t, watch.Added, ev.Type)
	assert.Equal(t, "a", ev.Object.(*flomesh.ServiceImport).Name, "only the namespace watched")
	ev = next(t, w)
	require.Equal(t, watch.Bookmark, ev.Type)
	bm := ev.Object.(*flomesh.ServiceImport)
	assert.Equal(t, "true", bm.Annotations[metav1.InitialEventsAnnotationKey])
	_, rv, _ := a.List("", everything)
	assert.Equal(t, rv, bm.ResourceVersion)
}

func TestSlowWatcherIsEndedNotWaitedFor(t *testing.T) {
	a := NewAggregate(10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.Watch(ctx, watchOptions{pred: everything, resourceVersion: "0"})
	require.NoError(t, err)
	defer w.Stop()
	// Nobody reads the watch; the writer must never block.
	done := make(chan struct{})
	go func() {
		for i := 0; i < watcherBuffer+10; i++ {
			a.Set(imp("ns", "a"+strconv.Itoa(i), 80), equalSpec)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a slow watcher blocked the aggregate")
	}
	// The watch delivers what it had buffered, then ends.
	n := 0
	for range w.ResultChan() {
		n++
	}
	assert.Less(t, n, watcherBuffer+10)
}

func TestNoInitialEventsBookmarkWithoutBookmarks(t *testing.T) {
	a := NewAggregate(10)
	a.Set(imp("ns", "a", 80), equalSpec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The API server defaults sendInitialEvents for a plain watch; without
	// allowWatchBookmarks the client is not ready for the bookmark.
	w, err := a.Watch(ctx, watchOptions{pred: everything, sendInitialEvents: true})
	require.NoError(t, err)
	defer w.Stop()
	assert.Equal(t, watch.Added, next(t, w).Type)
	a.Set(imp("ns", "b", 80), equalSpec)
	ev := next(t, w)
	assert.Equal(t, watch.Added, ev.Type, "no bookmark between the initial and the live events")
	assert.Equal(t, "b", ev.Object.(*flomesh.ServiceImport).Name)
}

// A periodic bookmark tells a client where to resume. On a resumed watch it
// must never carry a version older than what the client already holds,
// or the client's next reconnect replays the history, or gets 410 and
// relists.
func TestPeriodicBookmarkNeverGoesBackwards(t *testing.T) {
	for _, tc := range []struct {
		name      string
		namespace string // the namespace watched; the backlog is in "ns"
		backlog   int    // events the resumed watch should receive
	}{
		{name: "backlog sent", namespace: "", backlog: 2},
		{name: "backlog filtered out", namespace: "elsewhere", backlog: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAggregate(100)
			a.BookmarkInterval = 20 * time.Millisecond
			a.Set(imp("ns", "a", 80), equalSpec)
			_, resumeFrom, _ := a.List("", everything)
			a.Set(imp("ns", "b", 80), equalSpec)
			a.Set(imp("ns", "a", 81), equalSpec)
			_, newest, _ := a.List("", everything)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w, err := a.Watch(ctx, watchOptions{namespace: tc.namespace, pred: everything, resourceVersion: resumeFrom, bookmarks: true})
			require.NoError(t, err)
			defer w.Stop()

			lastSent := mustParseRV(t, resumeFrom)
			for i := 0; i < tc.backlog; i++ {
				ev := next(t, w)
				require.NotEqual(t, watch.Bookmark, ev.Type, "the backlog comes before any bookmark")
				lastSent = mustParseRV(t, ev.Object.(*flomesh.ServiceImport).ResourceVersion)
			}
			ev := next(t, w)
			require.Equal(t, watch.Bookmark, ev.Type)
			got := mustParseRV(t, ev.Object.(*flomesh.ServiceImport).ResourceVersion)
			assert.GreaterOrEqual(t, got, lastSent, "a bookmark went back behind the last event sent")
			assert.Equal(t, mustParseRV(t, newest), got, "the bookmark names the newest version the watch passed")
		})
	}
}

func mustParseRV(t *testing.T, rv string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(rv, 10, 64)
	require.NoError(t, err)
	return v
}

// big returns an import of about size bytes, in the endpoints of its port.
func big(ns, name string, size int) *flomesh.ServiceImport {
	si := imp(ns, name, 80)
	host := strings.Repeat("h", 1024)
	for n := 0; n < size; n += 1024 {
		si.Spec.Ports[0].Endpoints = append(si.Spec.Ports[0].Endpoints, flomesh.Endpoint{ClusterKey: "r/z/g/c", Target: flomesh.Target{Host: host}})
	}
	return si
}

// keptInHistory lists the versions the history holds, oldest first, and
// checks that the ring holds no object outside them.
func keptInHistory(t *testing.T, a *Aggregate) []string {
	t.Helper()
	a.mu.RLock()
	defer a.mu.RUnlock()
	var kept []string
	var bytes int64
	for i := range len(a.events) {
		ev := a.events[(a.head+i)%len(a.events)]
		if i >= a.n {
			assert.Nil(t, ev.obj, "a dropped event still holds its object")
			continue
		}
		kept = append(kept, ev.obj.ResourceVersion)
		bytes += ev.size
	}
	assert.Equal(t, a.bytes, bytes, "the history's byte count")
	return kept
}

func TestImportSizeFollowsContent(t *testing.T) {
	small := importSize(imp("ns", "a", 80))
	assert.Positive(t, small)
	assert.Less(t, small, int64(2048), "an import of one port is small")
	large := importSize(big("ns", "a", 1<<20))
	assert.Greater(t, large, int64(1<<20), "the endpoints' strings count")
	assert.Less(t, large, int64(2<<20))
	withMeta := imp("ns", "a", 80)
	withMeta.Annotations = map[string]string{"k": strings.Repeat("v", 10000)}
	assert.Greater(t, importSize(withMeta), small+10000)
}

// The history is bounded by bytes as well as by count: large imports push
// the oldest changes out, a watch resuming from one of them gets 410, one
// resuming from a kept version is replayed what followed it.
func TestHistoryBoundedByBytes(t *testing.T) {
	a := NewAggregate(DefaultHistory)
	a.HistoryBytes = 1 << 20
	var versions []string
	for i := range 40 {
		a.Set(big("ns", "i"+strconv.Itoa(i), 100<<10), equalSpec)
		got, _ := a.Get("ns", "i"+strconv.Itoa(i))
		versions = append(versions, got.ResourceVersion)
	}
	kept := keptInHistory(t, a)
	require.NotEmpty(t, kept)
	assert.Less(t, len(kept), 10, "about 100 KiB each within 1 MiB")
	assert.Greater(t, len(kept), 5)
	assert.LessOrEqual(t, a.bytes, a.HistoryBytes)
	assert.Equal(t, versions[len(versions)-len(kept):], kept, "the newest changes are the ones kept")

	firstKept := len(versions) - len(kept)
	for _, tc := range []struct {
		name   string
		resume int // index in versions of the version the watch resumes from
		gone   bool
		replay int // events replayed
	}{
		{name: "long dropped", resume: 0, gone: true},
		{name: "just dropped", resume: firstKept - 2, gone: true},
		{name: "the last dropped: what follows is all kept", resume: firstKept - 1, replay: len(kept)},
		{name: "the oldest kept", resume: firstKept, replay: len(kept) - 1},
		{name: "the newest", resume: len(versions) - 1, replay: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w, err := a.Watch(ctx, watchOptions{pred: everything, resourceVersion: versions[tc.resume]})
			if tc.gone {
				assert.True(t, apierrors.IsResourceExpired(err), "want 410, got %v", err)
				return
			}
			require.NoError(t, err)
			defer w.Stop()
			for i := range tc.replay {
				ev := next(t, w)
				assert.Equal(t, watch.Added, ev.Type)
				assert.Equal(t, versions[tc.resume+1+i], ev.Object.(*flomesh.ServiceImport).ResourceVersion)
			}
			select {
			case ev := <-w.ResultChan():
				t.Fatalf("unexpected event after the replay: %v", ev.Type)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// A change larger than the whole budget is still kept, alone: a client
// that saw the previous version resumes without relisting.
func TestHistoryKeepsTheNewestChange(t *testing.T) {
	a := NewAggregate(DefaultHistory)
	a.HistoryBytes = 64 << 10
	a.Set(imp("ns", "a", 80), equalSpec)
	_, before, _ := a.List("", everything)
	a.Set(big("ns", "b", 256<<10), equalSpec)
	assert.Len(t, keptInHistory(t, a), 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.Watch(ctx, watchOptions{pred: everything, resourceVersion: before})
	require.NoError(t, err)
	defer w.Stop()
	assert.Equal(t, "b", next(t, w).Object.(*flomesh.ServiceImport).Name)
}

// The count still bounds the history, and the ring lets go of what it
// drops, deleted imports included.
func TestHistoryBoundedByCount(t *testing.T) {
	a := NewAggregate(5)
	for i := range 23 {
		a.Set(imp("ns", "a", int32(80+i)), equalSpec)
		if i%3 == 0 {
			a.Delete("ns", "a")
		}
	}
	assert.Len(t, keptInHistory(t, a), 5)
}

// The aggregate forgets deleted imports, and gives back the room of a map
// that held many more.
func TestDeletedImportsAreForgotten(t *testing.T) {
	const n = 3 * minShrink
	a := NewAggregate(10)
	for i := range n {
		a.Set(imp("ns", "i"+strconv.Itoa(i), 80), equalSpec)
	}
	assert.Equal(t, n, a.peak)
	for i := range n - n/4 {
		assert.True(t, a.Delete("ns", "i"+strconv.Itoa(i)))
	}
	assert.Equal(t, n/4, a.Len())
	assert.Equal(t, n/4, a.peak, "the map was made anew")
	items, _, err := a.List("", everything)
	require.NoError(t, err)
	assert.Len(t, items, n/4)
	for i := n - n/4; i < n; i++ {
		_, ok := a.Get("ns", "i"+strconv.Itoa(i))
		assert.True(t, ok)
		assert.True(t, a.Delete("ns", "i"+strconv.Itoa(i)))
	}
	assert.Zero(t, a.Len())
	assert.Empty(t, a.items)
	assert.Less(t, a.peak, minShrink)
	assert.Len(t, keptInHistory(t, a), 10, "the history is bounded as ever")
}
