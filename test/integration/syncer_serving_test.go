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

package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/test/framework"
)

// TestSyncerMetricsAuthorized runs fedmesh-syncer as its ServiceAccount of
// artifacts/deploy and reads its secure port as several clients: the
// health endpoints answer anyone; /metrics answers only who the control
// plane authorizes to get it (the ClusterRole fedmesh:metrics-reader, or
// system:masters), whether by client certificate or by a ServiceAccount
// token it has the control plane review.
func TestSyncerMetricsAuthorized(t *testing.T) {
	f := framework.Start(t, framework.Options{WithSyncer: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := f.Syncer()
	kube := f.ControlPlane.Kube()

	get := func(t *testing.T, cfg *rest.Config, path string) (int, string) {
		t.Helper()
		code, body, err := s.Get(ctx, cfg, path)
		require.NoError(t, err)
		return code, string(body)
	}
	user := func(t *testing.T, name string) *rest.Config {
		t.Helper()
		cfg, err := f.ControlPlane.UserConfig(name)
		require.NoError(t, err)
		return cfg
	}
	// token returns a control-plane client configuration with a token of a
	// new ServiceAccount of namespace fedmesh.
	token := func(t *testing.T, sa string) *rest.Config {
		t.Helper()
		_, err := kube.CoreV1().ServiceAccounts("fedmesh").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
		tr, err := kube.CoreV1().ServiceAccounts("fedmesh").CreateToken(ctx, sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
		require.NoError(t, err)
		cfg := f.AnonymousConfig()
		cfg.BearerToken = tr.Status.Token
		return cfg
	}
	// grant binds the shipped ClusterRole fedmesh:metrics-reader.
	grant := func(t *testing.T, name string, subject rbacv1.Subject) {
		t.Helper()
		_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "fedmesh:metrics-reader"},
			Subjects:   []rbacv1.Subject{subject},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	// metricsEventually waits until cfg reads the syncer's metrics: RBAC
	// reaches the authorizer a moment after the binding is made.
	metricsEventually := func(t *testing.T, cfg *rest.Config) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			code, body, err := s.Get(ctx, cfg, "/metrics")
			if assert.NoError(c, err) && assert.Equal(c, http.StatusOK, code, "%s", body) {
				assert.Contains(c, string(body), "fedmesh_syncer_leader")
			}
		}, 20*time.Second, 100*time.Millisecond)
	}

	t.Run("the health endpoints are open", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/livez"} {
			code, body := get(t, f.AnonymousConfig(), p)
			assert.Equal(t, http.StatusOK, code, "%s: %s", p, body)
		}
	})

	t.Run("anonymous and unknown clients get no metrics", func(t *testing.T) {
		code, body := get(t, f.AnonymousConfig(), "/metrics")
		assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, "anonymous: %s", body)
		assert.NotContains(t, body, "fedmesh_syncer")

		bogus := f.AnonymousConfig()
		bogus.BearerToken = "not-a-token"
		code, body = get(t, bogus, "/metrics")
		assert.Equal(t, http.StatusUnauthorized, code, "a token the control plane rejects: %s", body)
	})

	t.Run("authenticated clients without the role get 403", func(t *testing.T) {
		code, body := get(t, user(t, "nobody"), "/metrics")
		assert.Equal(t, http.StatusForbidden, code, "a client certificate: %s", body)
		assert.NotContains(t, body, "fedmesh_syncer")

		code, body = get(t, token(t, "nosy"), "/metrics")
		assert.Equal(t, http.StatusForbidden, code, "a ServiceAccount token: %s", body)
		assert.Contains(t, body, "system:serviceaccount:fedmesh:nosy", "the token was reviewed: the 403 names its user")
	})

	t.Run("clients granted fedmesh:metrics-reader read the metrics", func(t *testing.T) {
		grant(t, "scraper-user", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "scraper"})
		metricsEventually(t, user(t, "scraper"))

		cfg := token(t, "prometheus")
		grant(t, "scraper-serviceaccount", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "fedmesh", Name: "prometheus"})
		metricsEventually(t, cfg)

		// The framework scrapes as the control plane's admin.
		_, err := s.Metric(ctx, "fedmesh_syncer_leader", nil)
		require.NoError(t, err)
		// Granting /metrics grants nothing else the syncer serves.
		code, body := get(t, user(t, "scraper"), "/debug/pprof/")
		assert.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, code, "%s", body)
	})

	t.Run("plain HTTP gets no metrics", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.Replace(s.URL("/metrics"), "https://", "http://", 1), nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			defer resp.Body.Close()
			assert.NotEqual(t, http.StatusOK, resp.StatusCode)
		}
	})
}
