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

package readiness

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWait(t *testing.T) {
	// readyAfter returns a Ready that turns true after n calls.
	readyAfter := func(n int32) func() bool {
		var calls atomic.Int32
		return func() bool { return calls.Add(1) > n }
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		gate    Gate
		ctx     context.Context
		want    bool
		maxWait time.Duration
	}{
		{name: "no ready func", gate: Gate{}, want: true},
		{name: "ready at once", gate: Gate{Ready: func() bool { return true }}, want: true},
		{name: "never ready, no timeout", gate: Gate{Ready: func() bool { return false }}, want: false},
		{name: "never ready, short timeout", gate: Gate{Ready: func() bool { return false }, Timeout: 150 * time.Millisecond}, want: false, maxWait: 2 * time.Second},
		{name: "ready while waiting", gate: Gate{Ready: readyAfter(2), Timeout: 5 * time.Second}, want: true},
		{name: "request gone while waiting", gate: Gate{Ready: func() bool { return false }, Timeout: time.Hour}, ctx: cancelled, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			assert.Equal(t, tc.want, tc.gate.Wait(ctx))
			if tc.maxWait > 0 {
				assert.Less(t, time.Since(start), tc.maxWait, "the timeout bounds the wait")
			}
		})
	}
}

func TestNewWaitsAsLongAsAdmissionHandler(t *testing.T) {
	assert.Equal(t, 10*time.Second, New(nil).Timeout)
}
