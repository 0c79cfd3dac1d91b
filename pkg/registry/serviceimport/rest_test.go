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
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// TestReadsWaitForCompleteImports checks that no read of an incomplete
// aggregate is served: a client would take the imports not yet computed for
// deleted. Each read is refused with 429 and a Retry-After, which clients
// retry, and served once the aggregate is complete.
func TestReadsWaitForCompleteImports(t *testing.T) {
	sendInitialEvents := true
	reads := map[string]func(*REST) error{
		"get": func(r *REST) error {
			_, err := r.Get(genericapirequest.WithNamespace(context.Background(), "ns"), "a", &metav1.GetOptions{})
			return err
		},
		"list": func(r *REST) error {
			_, err := r.List(genericapirequest.WithNamespace(context.Background(), "ns"), &metainternalversion.ListOptions{})
			return err
		},
		"watch": func(r *REST) error {
			w, err := r.Watch(genericapirequest.WithNamespace(context.Background(), "ns"), &metainternalversion.ListOptions{})
			if w != nil {
				w.Stop()
			}
			return err
		},
		"watch-list": func(r *REST) error {
			w, err := r.Watch(genericapirequest.WithNamespace(context.Background(), "ns"), &metainternalversion.ListOptions{
				SendInitialEvents: &sendInitialEvents, AllowWatchBookmarks: true,
			})
			if w != nil {
				w.Stop()
			}
			return err
		},
	}
	for _, tc := range []struct {
		name     string
		complete func() error
		refused  bool
	}{
		{name: "no gate", complete: nil},
		{name: "complete", complete: func() error { return nil }},
		{name: "incomplete", complete: func() error { return errors.New("waiting for the members of 1 Clusters to sync: [member-2]") }, refused: true},
	} {
		for verb, read := range reads {
			t.Run(tc.name+"/"+verb, func(t *testing.T) {
				a := NewAggregate(10)
				require.True(t, a.Set(imp("ns", "a", 80), equalSpec))
				err := read(NewREST(a, tc.complete))
				if !tc.refused {
					assert.NoError(t, err)
					return
				}
				require.Error(t, err)
				assert.True(t, apierrors.IsTooManyRequests(err), "want 429, got %v", err)
				seconds, ok := apierrors.SuggestsClientDelay(err)
				assert.True(t, ok, "a refusal must carry a Retry-After")
				assert.Equal(t, retryAfterSeconds, seconds)
				assert.Contains(t, err.Error(), "member-2", "the refusal says what is awaited")
			})
		}
	}
}
