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

package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedmesh/fedmesh/pkg/routing"
)

// backendKey names one backend of one cluster: a local endpoint, or an
// exporting cluster's gateway at one path.
type backendKey struct {
	cluster string
	backend routing.Backend
}

// health is the gateway's passive health check, as Envoy's outlier
// detection: a backend that refuses a connection, fails a request or
// answers 5xx is ejected at once for base, twice as long each time it
// fails again after coming back, up to max. A success forgets its
// failures. While ejected it is not chosen (routing.Route.Select), so
// FailOver moves to the next tier with the next request, with nothing
// configured and no request replayed.
type health struct {
	base, max time.Duration
	now       func() time.Time
	// onEject is called for every ejection, outside the lock.
	onEject func(cluster string)

	// ejected counts the entries of states, so that the common case, no
	// failure anywhere, takes no lock.
	entries atomic.Int64
	mu      sync.RWMutex
	states  map[backendKey]*backendState
}

type backendState struct {
	// failures is how many times in a row the backend was ejected.
	failures int
	until    time.Time
}

func newHealth(base, max time.Duration, onEject func(string)) *health {
	return &health{base: base, max: max, now: time.Now, onEject: onEject, states: map[backendKey]*backendState{}}
}

// usable reports whether a backend is not ejected now.
func (h *health) usable(cluster string, b routing.Backend) bool {
	if h.entries.Load() == 0 {
		return true
	}
	h.mu.RLock()
	s := h.states[backendKey{cluster, b}]
	h.mu.RUnlock()
	return s == nil || !h.now().Before(s.until)
}

// failed ejects a backend that just failed, unless it is ejected
// already: the requests that were in flight when it failed fail too, and
// count as one failure. It returns how long the backend is out.
func (h *health) failed(cluster string, b routing.Backend) time.Duration {
	k := backendKey{cluster, b}
	now := h.now()
	h.mu.Lock()
	s := h.states[k]
	if s == nil {
		s = &backendState{}
		h.states[k] = s
		h.entries.Add(1)
	} else if now.Before(s.until) {
		h.mu.Unlock()
		return 0
	}
	s.failures++
	d := h.base
	for i := 1; i < s.failures && d < h.max; i++ {
		d *= 2
	}
	d = min(d, h.max)
	s.until = now.Add(d)
	h.mu.Unlock()
	if h.onEject != nil {
		h.onEject(cluster)
	}
	return d
}

// succeeded forgets a backend's failures.
func (h *health) succeeded(cluster string, b routing.Backend) {
	if h.entries.Load() == 0 {
		return
	}
	k := backendKey{cluster, b}
	h.mu.Lock()
	if _, ok := h.states[k]; ok {
		delete(h.states, k)
		h.entries.Add(-1)
	}
	h.mu.Unlock()
}

// forget drops the states of backends that have been back for longer
// than the longest ejection: a backend that went away must not keep an
// entry forever, and one that is back has served its time.
func (h *health) forget() {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, s := range h.states {
		if now.Sub(s.until) > h.max {
			delete(h.states, k)
			h.entries.Add(-1)
		}
	}
}
