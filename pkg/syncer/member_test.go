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

package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
)

// conflictMember is a member with the caches reportConflict reads, fed by
// a fake clientset holding objs, and the handlers that forget.
func conflictMember(t *testing.T, objs ...runtime.Object) (*member, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	// The fake's watches do not resume from a version: an event sent
	// between an informer's list and its watch is lost. The test waits for
	// the three watches to be open before it changes anything.
	watching := make(chan struct{}, 3)
	client.PrependWatchReactor("*", func(action core.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		watching <- struct{}{}
		return true, w, nil
	})
	recorder := record.NewFakeRecorder(100)
	m := &member{name: "cluster-1", reported: map[types.UID]string{}, recorder: recorder}
	m.fedFactory = fedinformers.NewSharedInformerFactory(client, 0)
	fl := m.fedFactory.Flomesh().V1alpha1()
	m.exports, m.imports, m.policies = fl.ServiceExports().Lister(), fl.ServiceImports().Lister(), fl.GlobalTrafficPolicies().Lister()
	m.forgetReportedOnDelete()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		m.fedFactory.Shutdown()
	})
	m.fedFactory.Start(ctx.Done())
	for typ, ok := range m.fedFactory.WaitForCacheSync(ctx.Done()) {
		require.True(t, ok, "%v synced", typ)
	}
	for range 3 {
		select {
		case <-watching:
		case <-time.After(10 * time.Second):
			t.Fatal("the informers never watched")
		}
	}
	return m, client, recorder
}

func (m *member) reportedLen() int {
	m.reportedMu.Lock()
	defer m.reportedMu.Unlock()
	return len(m.reported)
}

// What is reported about an object is remembered while the object lasts,
// so that a lasting conflict is reported once, and forgotten with it.
func TestReportedConflictsGoWithTheirObjects(t *testing.T) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}
	}
	export := &v1alpha1.ServiceExport{ObjectMeta: meta("export")}
	imp := &v1alpha1.ServiceImport{ObjectMeta: meta("import")}
	gtp := &v1alpha1.GlobalTrafficPolicy{ObjectMeta: meta("policy")}
	for _, tc := range []struct {
		name   string
		obj    runtime.Object
		delete func(ctx context.Context, c *fake.Clientset) error
	}{
		{name: "ServiceExport", obj: export, delete: func(ctx context.Context, c *fake.Clientset) error {
			return c.FlomeshV1alpha1().ServiceExports("ns").Delete(ctx, "export", metav1.DeleteOptions{})
		}},
		{name: "ServiceImport", obj: imp, delete: func(ctx context.Context, c *fake.Clientset) error {
			return c.FlomeshV1alpha1().ServiceImports("ns").Delete(ctx, "import", metav1.DeleteOptions{})
		}},
		{name: "GlobalTrafficPolicy", obj: gtp, delete: func(ctx context.Context, c *fake.Clientset) error {
			return c.FlomeshV1alpha1().GlobalTrafficPolicies("ns").Delete(ctx, "policy", metav1.DeleteOptions{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, client, recorder := conflictMember(t, export, imp, gtp)
			uid := tc.obj.(metav1.Object).GetUID()
			for range 3 {
				m.reportConflict(tc.obj, uid, "Reason", "a conflict")
			}
			assert.Len(t, recorder.Events, 1, "a lasting conflict is reported once")
			m.reportConflict(tc.obj, uid, "Reason", "another conflict")
			assert.Len(t, recorder.Events, 2, "a new conflict is reported")
			assert.Equal(t, 1, m.reportedLen(), "one entry per object")

			require.NoError(t, tc.delete(context.Background(), client))
			assert.Eventually(t, func() bool { return m.reportedLen() == 0 }, 5*time.Second, time.Millisecond,
				"the entry goes with the object")
			// Reported again about the deleted object, by a reconcile that
			// read it before it went: reported, not remembered.
			m.reportConflict(tc.obj, uid, "Reason", "another conflict")
			assert.Len(t, recorder.Events, 3)
			assert.Zero(t, m.reportedLen())
		})
	}
}

// A deletion whose final state the informer missed forgets all the same.
func TestReportedConflictForgottenOnMissedDeletion(t *testing.T) {
	export := &v1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "export", UID: "uid-1"}}
	m, _, _ := conflictMember(t, export)
	m.reportConflict(export, export.UID, "Reason", "a conflict")
	require.Equal(t, 1, m.reportedLen())
	m.forgetReported(cache.DeletedFinalStateUnknown{Key: "ns/export", Obj: export})
	assert.Zero(t, m.reportedLen())
}
