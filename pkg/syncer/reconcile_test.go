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

// The reconciler's tests, as sample-controller's: a member whose clients
// are fake clientsets and whose caches are indexers holding the test's
// objects, one reconcile of one service, and the writes it sent compared
// with the expected ones. What the member should hold is desired.go's, and
// tested there; these check that reconcile fetches the right inputs and
// applies the outputs, and writes nothing more.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	fedscheme "github.com/fedmesh/fedmesh/generated/clientset/versioned/scheme"
	fedlisters "github.com/fedmesh/fedmesh/generated/listers/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/imports"
)

// fixture is a syncer with one member, k1 or k2 of desired_test.go.
type fixture struct {
	t *testing.T
	// On the control plane: the computed imports and the policies.
	cpImports  []*v1alpha1.ServiceImport
	cpPolicies []*v1alpha1.GlobalTrafficPolicy
	// In the member: fedmesh's objects, Ingresses, and the names of the
	// Services and namespaces (only their existence is cached).
	memberObjects []runtime.Object
	ingresses     []*networkingv1.Ingress
	services      []string // namespace/name
	namespaces    []string

	fed      *fake.Clientset
	kube     *kubefake.Clientset
	recorder *record.FakeRecorder
}

func indexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

func add(t *testing.T, i cache.Indexer, objs ...interface{}) {
	t.Helper()
	for _, o := range objs {
		require.NoError(t, i.Add(o))
	}
}

// metadataOf is the cached metadata of a Service or namespace.
func metadataOf(kind, ref string) *metav1.PartialObjectMetadata {
	namespace, name, found := strings.Cut(ref, "/")
	if !found {
		namespace, name = "", ref
	}
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: kind}, ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

// run reconciles namespace/name in the member of key, and returns the
// writes sent to the member, as "verb resource[/subresource] namespace/name".
func (f *fixture) run(key string, k serviceKey) []string {
	f.t.Helper()
	s := &Syncer{opts: Options{IngressClass: "pipy"}}
	cpImports, cpPolicies := indexer(), indexer()
	for _, o := range f.cpImports {
		add(f.t, cpImports, o)
	}
	for _, o := range f.cpPolicies {
		add(f.t, cpPolicies, o)
	}
	s.imports, s.policies = fedlisters.NewServiceImportLister(cpImports), fedlisters.NewGlobalTrafficPolicyLister(cpPolicies)

	f.fed = fake.NewSimpleClientset(f.memberObjects...)
	f.fed.PrependReactor("patch", "*", applyAsUpdate(f.fed.Tracker()))
	var kubeObjects []runtime.Object
	for _, ing := range f.ingresses {
		kubeObjects = append(kubeObjects, ing)
	}
	f.kube = kubefake.NewSimpleClientset(kubeObjects...)
	f.kube.PrependReactor("patch", "*", applyAsUpdate(f.kube.Tracker()))
	f.recorder = record.NewFakeRecorder(10)
	m := &member{name: "member", key: key, fed: f.fed, kube: f.kube, recorder: f.recorder, reported: map[types.UID]string{}}
	exports, imps, policies := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, exportPathIndex: indexExportPaths}), indexer(), indexer()
	for _, o := range f.memberObjects {
		switch o := o.(type) {
		case *v1alpha1.ServiceExport:
			add(f.t, exports, o)
		case *v1alpha1.ServiceImport:
			add(f.t, imps, o)
		case *v1alpha1.GlobalTrafficPolicy:
			add(f.t, policies, o)
		}
	}
	m.exports, m.exportsByPath = fedlisters.NewServiceExportLister(exports), exports
	m.imports, m.policies = fedlisters.NewServiceImportLister(imps), fedlisters.NewGlobalTrafficPolicyLister(policies)
	ings := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, ingressPathIndex: indexIngressPaths})
	for _, o := range f.ingresses {
		add(f.t, ings, o)
	}
	m.ingresses, m.ingressesByPath = networkinglisters.NewIngressLister(ings), ings
	svcs, nss := indexer(), indexer()
	for _, ref := range f.services {
		add(f.t, svcs, metadataOf("Service", ref))
	}
	for _, name := range f.namespaces {
		add(f.t, nss, metadataOf("Namespace", name))
	}
	m.services = cache.NewGenericLister(svcs, corev1.Resource("services"))
	m.namespaces = cache.NewGenericLister(nss, corev1.Resource("namespaces"))

	require.NoError(f.t, s.reconcile(context.Background(), m, k))
	out := append(writes(f.fed.Actions()), writes(f.kube.Actions())...)
	sort.Strings(out)
	return out
}

// applyAsUpdate handles server-side apply patches, which the fake
// clientsets' tracker does not, as a create or a merge of the applied
// object: enough to read back what the syncer applied. (The field-managed
// fake of the generated clientset knows no schema of fedmesh's types.)
func applyAsUpdate(tracker core.ObjectTracker) core.ReactionFunc {
	return func(action core.Action) (bool, runtime.Object, error) {
		patch, ok := action.(core.PatchAction)
		if !ok || patch.GetPatchType() != types.ApplyPatchType {
			return false, nil, nil
		}
		gvr := action.GetResource()
		current, err := tracker.Get(gvr, patch.GetNamespace(), patch.GetName())
		if apierrors.IsNotFound(err) {
			obj := &unstructured.Unstructured{}
			if err := json.Unmarshal(patch.GetPatch(), &obj.Object); err != nil {
				return true, nil, err
			}
			typed, err := scheme.Scheme.New(obj.GroupVersionKind())
			if err != nil {
				typed, err = fedscheme.Scheme.New(obj.GroupVersionKind())
			}
			if err != nil {
				return true, nil, err
			}
			if err := json.Unmarshal(patch.GetPatch(), typed); err != nil {
				return true, nil, err
			}
			return true, typed, tracker.Create(gvr, typed, patch.GetNamespace())
		}
		if err != nil {
			return true, nil, err
		}
		// A merge patch of the applied fields over the object; conditions,
		// a list, are replaced whole, which is what the syncer applies.
		before, err := runtime.DefaultUnstructuredConverter.ToUnstructured(current)
		if err != nil {
			return true, nil, err
		}
		var applied map[string]interface{}
		if err := json.Unmarshal(patch.GetPatch(), &applied); err != nil {
			return true, nil, err
		}
		merge(before, applied)
		after, err := json.Marshal(before)
		if err != nil {
			return true, nil, err
		}
		updated := current.DeepCopyObject()
		if err := json.Unmarshal(after, updated); err != nil {
			return true, nil, err
		}
		return true, updated, tracker.Update(gvr, updated, patch.GetNamespace())
	}
}

// merge sets into dst every field of src, merging objects and replacing
// everything else.
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sv, ok := v.(map[string]interface{}); ok {
			if dv, ok := dst[k].(map[string]interface{}); ok {
				merge(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

// writes names the mutating actions, sorted.
func writes(actions []core.Action) []string {
	var out []string
	for _, a := range actions {
		if a.Matches("get", a.GetResource().Resource) || a.GetVerb() == "list" || a.GetVerb() == "watch" {
			continue
		}
		name := ""
		switch a := a.(type) {
		case core.CreateAction:
			if o, err := meta.Accessor(a.GetObject()); err == nil {
				name = o.GetName()
			}
		case core.PatchAction:
			name = a.GetName()
		case core.DeleteAction:
			name = a.GetName()
		}
		res := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			res += "/" + sub
		}
		out = append(out, fmt.Sprintf("%s %s %s/%s", a.GetVerb(), res, a.GetNamespace(), name))
	}
	sort.Strings(out)
	return out
}

var httpbin = serviceKey{"httpbin", "httpbin"}

// exported is the seed's export of cluster-1, judged valid by the control
// plane (an export listed without conditions).
func exported() (*v1alpha1.ServiceExport, *v1alpha1.ServiceImport) {
	e := seedExport()
	e.Generation = 1
	imp := seedImport(port(8080, e1))
	imp.Status.Exports = []v1alpha1.ExportStatus{{Cluster: k1, ObservedGeneration: 1}}
	return e, imp
}

func TestReconcile(t *testing.T) {
	upToDate := memberImport(port(8080, e1))
	v1alpha1.SetObjectDefaults_ServiceImport(upToDate)
	foreign := memberImport(port(8080, e1))
	foreign.Labels = nil

	t.Run("an importer gets the import, and the namespace it needs", func(t *testing.T) {
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{seedImport(port(8080, e1))}}
		assert.Equal(t, []string{
			"create namespaces /httpbin",
			"patch serviceimports httpbin/httpbin",
		}, f.run(k2, httpbin))
		ns, err := f.kube.CoreV1().Namespaces().Get(context.Background(), "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, ManagedByValue, ns.Labels[ManagedByLabel], "the namespace is marked as the syncer's")
		si, err := f.fed.FlomeshV1alpha1().ServiceImports("httpbin").Get(context.Background(), "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, []v1alpha1.Endpoint{e1}, si.Spec.Ports[0].Endpoints)
	})

	t.Run("a member that holds what it should costs no write", func(t *testing.T) {
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{seedImport(port(8080, e1))},
			memberObjects: []runtime.Object{upToDate}, namespaces: []string{"httpbin"}}
		assert.Empty(t, f.run(k2, httpbin))
	})

	t.Run("an import the syncer did not write is left, and reported", func(t *testing.T) {
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{seedImport(port(8080, e1))},
			memberObjects: []runtime.Object{foreign}, namespaces: []string{"httpbin"}}
		assert.Empty(t, f.run(k2, httpbin))
		require.Len(t, f.recorder.Events, 1)
		assert.Contains(t, <-f.recorder.Events, ReasonNotManaged)
	})

	t.Run("an import no longer wanted goes, if it is the syncer's", func(t *testing.T) {
		f := &fixture{t: t, memberObjects: []runtime.Object{upToDate}, namespaces: []string{"httpbin"}}
		assert.Equal(t, []string{"delete serviceimports httpbin/httpbin"}, f.run(k2, httpbin))
		f = &fixture{t: t, memberObjects: []runtime.Object{foreign}, namespaces: []string{"httpbin"}}
		assert.Empty(t, f.run(k2, httpbin))
	})

	t.Run("a valid export with free paths gets its Ingress and its conditions", func(t *testing.T) {
		e, imp := exported()
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{imp}, memberObjects: []runtime.Object{e},
			services: []string{"httpbin/httpbin"}, namespaces: []string{"httpbin"}}
		assert.Equal(t, []string{
			"patch ingresses httpbin/fedmesh-httpbin",
			"patch serviceexports/status httpbin/httpbin",
		}, f.run(k1, httpbin), "an exporter imports nothing of its own")
		got, err := f.fed.FlomeshV1alpha1().ServiceExports("httpbin").Get(context.Background(), "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		assert.True(t, meta.IsStatusConditionTrue(got.Status.Conditions, imports.ConditionValid))
		assert.True(t, meta.IsStatusConditionFalse(got.Status.Conditions, imports.ConditionConflict))
		assert.True(t, meta.IsStatusConditionTrue(got.Status.Conditions, imports.ConditionPathsAvailable))
	})

	t.Run("a path someone's Ingress serves: no Ingress, PathsAvailable=False and an event", func(t *testing.T) {
		e, imp := exported()
		mine := ingress("default", "mine", ptr.To("pipy"), "", nil, "/cluster-1/httpbin-mesh")
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{imp}, memberObjects: []runtime.Object{e},
			ingresses: []*networkingv1.Ingress{mine}, services: []string{"httpbin/httpbin"}, namespaces: []string{"httpbin"}}
		assert.Equal(t, []string{"patch serviceexports/status httpbin/httpbin"}, f.run(k1, httpbin))
		got, err := f.fed.FlomeshV1alpha1().ServiceExports("httpbin").Get(context.Background(), "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		paths := meta.FindStatusCondition(got.Status.Conditions, imports.ConditionPathsAvailable)
		require.NotNil(t, paths)
		assert.Equal(t, metav1.ConditionFalse, paths.Status)
		assert.Equal(t, "path /cluster-1/httpbin-mesh is already used by Ingress default/mine", paths.Message)
		assert.True(t, meta.IsStatusConditionTrue(got.Status.Conditions, imports.ConditionValid),
			"Valid is the control plane's to change, from this condition")
		require.Len(t, f.recorder.Events, 1)
		assert.Contains(t, <-f.recorder.Events, imports.ReasonIngressConflict)
	})

	t.Run("only the Ingresses in an export's way are looked at, through the member's index", func(t *testing.T) {
		e, imp := exported()
		ings := []*networkingv1.Ingress{
			// Another path, and the export's path for one host only.
			ingress("default", "other", ptr.To("pipy"), "", nil, "/cluster-1/other"),
			ingress("default", "hosted", ptr.To("pipy"), "example.com", nil, "/cluster-1/httpbin-mesh"),
		}
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{imp}, memberObjects: []runtime.Object{e},
			ingresses: ings, services: []string{"httpbin/httpbin"}, namespaces: []string{"httpbin"}}
		assert.Equal(t, []string{
			"patch ingresses httpbin/fedmesh-httpbin",
			"patch serviceexports/status httpbin/httpbin",
		}, f.run(k1, httpbin), "neither is in the way")

		// An Ingress of the export's Ingress name that is not the syncer's,
		// whatever it serves.
		squatter := ingress("httpbin", IngressName("httpbin"), ptr.To("other"), "", nil, "/elsewhere")
		f = &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{imp}, memberObjects: []runtime.Object{e},
			ingresses: append(ings, squatter), services: []string{"httpbin/httpbin"}, namespaces: []string{"httpbin"}}
		assert.Equal(t, []string{"patch serviceexports/status httpbin/httpbin"}, f.run(k1, httpbin))
		got, err := f.fed.FlomeshV1alpha1().ServiceExports("httpbin").Get(context.Background(), "httpbin", metav1.GetOptions{})
		require.NoError(t, err)
		paths := meta.FindStatusCondition(got.Status.Conditions, imports.ConditionPathsAvailable)
		require.NotNil(t, paths)
		assert.Equal(t, "Ingress httpbin/fedmesh-httpbin exists and is not managed by fedmesh", paths.Message)
	})

	t.Run("nothing is written into a namespace that does not federate", func(t *testing.T) {
		imp := seedImport(port(8080, e1))
		imp.Namespace = "kube-system"
		owned := memberImport(port(8080, e1))
		owned.Namespace = "kube-system"
		f := &fixture{t: t, cpImports: []*v1alpha1.ServiceImport{imp}, memberObjects: []runtime.Object{owned},
			namespaces: []string{"kube-system"}}
		assert.Equal(t, []string{"delete serviceimports kube-system/httpbin"}, f.run(k2, serviceKey{"kube-system", "httpbin"}),
			"what was written there before goes")
	})
}

// TestCreateNamespaceOnce checks that workers needing a namespace while its
// creation is in flight wait for it rather than send their own, and share
// its outcome.
func TestCreateNamespaceOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refuse  error
		wantErr bool
	}{
		{name: "created"},
		{name: "already there", refuse: apierrors.NewAlreadyExists(corev1.Resource("namespaces"), "ns")},
		{name: "refused", refuse: apierrors.NewForbidden(corev1.Resource("namespaces"), "ns", errors.New("no")), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := kubefake.NewSimpleClientset()
			entered, release := make(chan struct{}), make(chan struct{})
			var creates atomic.Int32
			kube.PrependReactor("create", "namespaces", func(core.Action) (bool, runtime.Object, error) {
				if creates.Add(1) == 1 {
					close(entered)
				}
				<-release
				if tc.refuse != nil {
					return true, nil, tc.refuse
				}
				return false, nil, nil
			})
			m := &member{name: "member", kube: kube}
			const followers = 8
			errs := make(chan error, followers+1)
			go func() { errs <- m.createNamespace(context.Background(), "ns") }()
			<-entered
			for range followers {
				go func() { errs <- m.createNamespace(context.Background(), "ns") }()
			}
			// Released once every follower waits on the creation in flight.
			require.Eventually(t, func() bool {
				m.creatingMu.Lock()
				defer m.creatingMu.Unlock()
				return m.creating["ns"].waiters == followers
			}, 10*time.Second, time.Millisecond)
			close(release)
			for range followers + 1 {
				if err := <-errs; tc.wantErr {
					assert.True(t, apierrors.IsForbidden(err), "error %v", err)
				} else {
					assert.NoError(t, err)
				}
			}
			assert.Equal(t, int32(1), creates.Load(), "namespace creations sent")
			assert.Empty(t, m.creating, "nothing left in flight")
		})
	}
}
