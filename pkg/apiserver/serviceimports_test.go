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
package apiserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/fedmesh/fedmesh/apis/flomesh"
	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/informers/externalversions"
)

func setImport(ns, name string, port int32, clusters ...string) {
	si := &flomesh.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)},
		Spec:       flomesh.ServiceImportSpec{Type: flomesh.ClusterSetIP, Ports: []flomesh.ServicePort{{Port: port, Protocol: "TCP"}}},
	}
	for _, c := range clusters {
		si.Status.Clusters = append(si.Status.Clusters, flomesh.SourceStatus{Cluster: c})
	}
	testImports.Set(si, func(a, b *flomesh.ServiceImport) bool {
		return apiequality.Semantic.DeepEqual(a.Spec, b.Spec) && apiequality.Semantic.DeepEqual(a.Status, b.Status)
	})
}

func TestServiceImportsAreReadOnly(t *testing.T) {
	ctx := ctxFor(t)
	setImport("readonly", "httpbin", 8080, "default/default/default/cluster-1")
	imports := newClient(t).FlomeshV1alpha1().ServiceImports("readonly")

	got, err := imports.Get(ctx, "httpbin", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(8080), got.Spec.Ports[0].Port)

	si := &v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Name: "new"}}
	for name, err := range map[string]error{
		"create": func() error { _, err := imports.Create(ctx, si, metav1.CreateOptions{}); return err }(),
		"update": func() error { _, err := imports.Update(ctx, got, metav1.UpdateOptions{}); return err }(),
		"patch": func() error {
			_, err := imports.Patch(ctx, "httpbin", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
			return err
		}(),
		"delete": imports.Delete(ctx, "httpbin", metav1.DeleteOptions{}),
	} {
		assert.True(t, apierrors.IsMethodNotSupported(err), "%s: want 405, got %v", name, err)
		if status, ok := err.(apierrors.APIStatus); ok {
			assert.Equal(t, int32(http.StatusMethodNotAllowed), status.Status().Code, name)
		}
	}

	dc, err := discovery.NewDiscoveryClientForConfig(adminConfig)
	require.NoError(t, err)
	list, err := dc.ServerResourcesForGroupVersion("flomesh.io/v1alpha1")
	require.NoError(t, err)
	for _, r := range list.APIResources {
		if r.Name == "serviceimports" {
			assert.ElementsMatch(t, []string{"get", "list", "watch"}, []string(r.Verbs))
			assert.Equal(t, []string{"simp"}, r.ShortNames)
			assert.True(t, r.Namespaced)
			return
		}
	}
	t.Fatal("discovery does not list serviceimports")
}

func TestServiceImportListAndTable(t *testing.T) {
	ctx := ctxFor(t)
	setImport("list-a", "one", 80, "default/default/default/cluster-1", "default/default/default/cluster-3")
	setImport("list-a", "two", 81)
	setImport("list-b", "three", 82)
	client := newClient(t).FlomeshV1alpha1()

	all, err := client.ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.NotEmpty(t, all.ResourceVersion)
	names := map[string]bool{}
	for _, si := range all.Items {
		names[si.Namespace+"/"+si.Name] = true
	}
	assert.True(t, names["list-a/one"] && names["list-a/two"] && names["list-b/three"], "all namespaces: %v", names)

	inA, err := client.ServiceImports("list-a").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, inA.Items, 2)

	byName, err := client.ServiceImports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=three"})
	require.NoError(t, err)
	require.Len(t, byName.Items, 1)
	assert.Equal(t, "list-b", byName.Items[0].Namespace)

	_, err = client.ServiceImports("list-a").List(ctx, metav1.ListOptions{FieldSelector: "spec.type=Headless"})
	assert.True(t, apierrors.IsBadRequest(err), "unsupported field selector: want 400, got %v", err)

	rc, err := rest.UnversionedRESTClientFor(withNegotiation(adminConfig))
	require.NoError(t, err)
	raw, err := rc.Get().AbsPath("/apis/flomesh.io/v1alpha1/namespaces/list-a/serviceimports/one").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Raw()
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"Clusters"`)
	assert.Contains(t, string(raw), `"80/TCP"`)
	assert.Contains(t, string(raw), "default/default/default/cluster-1,default/default/default/cluster-3")
}

// TestServiceImportInformer runs a client-go informer with default
// settings, which since 1.35 lists through a watch with sendInitialEvents
// and waits for the initial-events-end bookmark.
func TestServiceImportInformer(t *testing.T) {
	ctx := ctxFor(t)
	setImport("informed", "before", 80)

	factory := externalversions.NewSharedInformerFactoryWithOptions(newClient(t), 0, externalversions.WithNamespace("informed"))
	informer := factory.Flomesh().V1alpha1().ServiceImports().Informer()
	events := make(chan string, 16)
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { events <- "add " + obj.(*v1alpha1.ServiceImport).Name },
		UpdateFunc: func(_, obj interface{}) { events <- "update " + obj.(*v1alpha1.ServiceImport).Name },
		DeleteFunc: func(obj interface{}) {
			if si, ok := obj.(*v1alpha1.ServiceImport); ok {
				events <- "delete " + si.Name
			}
		},
	})
	require.NoError(t, err)
	stop := make(chan struct{})
	factory.Start(stop)
	defer factory.Shutdown()
	defer close(stop)
	syncCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.True(t, cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced), "informer syncs")

	expect := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			assert.Equal(t, want, got)
		case <-time.After(time.Second):
			t.Fatalf("no %q within 1s", want)
		}
	}
	expect("add before")
	setImport("informed", "after", 80)
	expect("add after")
	setImport("informed", "after", 81)
	expect("update after")
	testImports.Delete("informed", "after")
	expect("delete after")
}
