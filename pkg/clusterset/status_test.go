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
package clusterset

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fedmesh/fedmesh/pkg/members"
)

// What a member answers is never repeated in status: only fedmesh's own
// fixed words, so that status cannot be used to read what a URL serves.
func TestFailureRepeatsNothingTheMemberSaid(t *testing.T) {
	const secret = "internal-admin-panel at http://10.0.0.7/ says hello"
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		want   string
	}{
		{"403 with a body", apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, "y", fmt.Errorf("%s", secret)),
			ReasonForbidden, "HTTP 403"},
		{"401", apierrors.NewUnauthorized(secret), ReasonUnauthorized, "refused the kubeconfig's credentials"},
		{"500 with a body", apierrors.NewInternalError(fmt.Errorf("%s", secret)), ReasonUnreachable, "answered HTTP 500"},
		{"non-API 502", apierrors.NewGenericServerResponse(502, "get", schema.GroupResource{}, "", secret, 0, true),
			ReasonUnreachable, "answered HTTP 502"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%s: %w", secret, syscall.ECONNREFUSED)},
			ReasonUnreachable, "connection refused"},
		{"dns", &net.DNSError{Err: "no such host", Name: secret}, ReasonUnreachable, "does not resolve"},
		{"too large", fmt.Errorf("reading %s: %w", secret, members.ErrResponseTooLarge), ReasonUnreachable, "exceeds fedmesh's size limit"},
		{"anything else", fmt.Errorf("%s", secret), ReasonUnreachable, "no usable answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := failure(tc.err)
			assert.Equal(t, tc.reason, c.Reason)
			assert.Contains(t, c.Message, tc.want)
			assert.NotContains(t, c.Message, "10.0.0.7")
			assert.NotContains(t, c.Message, "hello")
		})
	}
}

func TestReportedVersion(t *testing.T) {
	for v, want := range map[string]string{
		"v1.37.2":                             "v1.37.2",
		"v1.38.0-alpha.1":                     "v1.38.0-alpha.1",
		"v1.31.4+k3s1":                        "v1.31.4+k3s1",
		"v1.30.2-eks-1234abc":                 "v1.30.2-eks-1234abc",
		"":                                    "",
		"1.37.2":                              "",
		"v1.37.2 <script>":                    "",
		"v1.37.2\x1b[31m":                     "",
		"v1.37.2-" + strings.Repeat("a", 100): "",
		"http://10.0.0.7/":                    "",
	} {
		assert.Equal(t, want, reportedVersion(v), "%q", v)
	}
}
