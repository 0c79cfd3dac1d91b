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

// Package readiness makes an admission plugin's requests wait for its
// caches. It is admission.Handler's WaitForReady with two differences: the
// wait follows the request's context, and its timeout is a field, so that a
// test of the "not yet ready" answer takes milliseconds instead of kube's
// fixed ten seconds.
package readiness

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// DefaultTimeout is how long a request waits for the caches, as long as
// admission.Handler waits.
const DefaultTimeout = 10 * time.Second

// pollInterval is how often the caches are asked again, as
// admission.Handler asks.
const pollInterval = 100 * time.Millisecond

// Gate holds requests until its plugin is ready.
type Gate struct {
	// Ready tells whether the plugin is ready. A nil Ready is always ready.
	Ready func() bool
	// Timeout is how long a request waits for Ready before it is refused.
	Timeout time.Duration
}

// New returns a gate that waits DefaultTimeout for ready.
func New(ready func() bool) Gate {
	return Gate{Ready: ready, Timeout: DefaultTimeout}
}

// Wait reports whether the plugin is ready, waiting up to the gate's
// timeout, or until ctx ends, for it to become so.
func (g Gate) Wait(ctx context.Context) bool {
	if g.Ready == nil || g.Ready() {
		return true
	}
	if g.Timeout <= 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, pollInterval, false, func(context.Context) (bool, error) {
		return g.Ready(), nil
	})
	return err == nil
}
