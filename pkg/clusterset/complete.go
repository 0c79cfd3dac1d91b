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
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// InitialSyncTimeout bounds how long the imports count as incomplete after
// the controller starts: a member whose caches take longer to sync, or a
// Cluster that never gets a member, no longer holds the server back.
const InitialSyncTimeout = 30 * time.Second

// initialSync follows whether the imports are complete since the
// controller started. A server that starts (or restarts, or is a new
// replica) begins with no imports and fills them member by member; until
// every member known at the start has been reached, it would serve the
// imports of some members only, and a client that lists it then (an
// informer that relists, fedmesh-syncer among them) takes the others for
// deleted, and withdraws them from every member. So the server reports
// itself not ready until then (ImportsComplete), as a Service sends
// nothing to a pod that is not ready.
type initialSync struct {
	mu sync.Mutex
	// pending are the Clusters, found when the controller started, whose
	// member has not been settled yet; nil before the start.
	pending map[string]bool
	started time.Time
	// complete latches: once complete, the imports stay complete, and a
	// member that fails later is a matter of its own status and grace.
	complete atomic.Bool
	// recomputing counts the recomputes in progress, which the service
	// queue no longer counts.
	recomputing atomic.Int32
}

// beginInitialSync records the Clusters to wait for. Called once their
// informer has synced.
func (c *Controller) beginInitialSync() {
	clusters, err := c.clusters.List(labels.Everything())
	s := &c.initial
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = c.clock.Now()
	s.pending = map[string]bool{}
	if err != nil {
		return
	}
	for _, cl := range clusters {
		if cl.DeletionTimestamp == nil {
			s.pending[cl.Name] = true
		}
	}
}

// settleProbed settles a pending Cluster once a probe of its member has
// ended: its member is gone, its caches have synced (and every export
// they hold is queued for its import), or it failed otherwise than by
// syncing slowly (it does not answer, its credentials fail, it has no
// CRD): the imports then hold what fedmesh can know of it.
func (c *Controller) settleProbed(name string) {
	s := &c.initial
	if s.complete.Load() {
		return
	}
	s.mu.Lock()
	pending := s.pending[name]
	s.mu.Unlock()
	if !pending {
		return
	}
	c.mu.RLock()
	m := c.members[name]
	c.mu.RUnlock()
	if m != nil {
		if m.synced() {
			// The caches' event handlers may still be delivering the
			// initial exports: queue them all now.
			for _, k := range m.exportKeys() {
				c.enqueueService(k[0], k[1])
			}
		} else {
			m.mu.Lock()
			syncing := m.ready.Reason == ReasonSyncing
			m.mu.Unlock()
			if syncing {
				return
			}
		}
	}
	s.mu.Lock()
	delete(s.pending, name)
	s.mu.Unlock()
}

// ImportsComplete reports whether the imports hold every member known
// when the controller started: each settled, and each export they hold
// recomputed into its import. It returns nil when they do, and otherwise
// an error that says what is awaited. Once complete, always complete.
func (c *Controller) ImportsComplete() error {
	s := &c.initial
	if s.complete.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return fmt.Errorf("the Clusters have not been read yet")
	}
	// A Cluster deleted meanwhile is waited for no more.
	for name := range s.pending {
		if cl, err := c.clusters.Get(name); err != nil || cl.DeletionTimestamp != nil {
			delete(s.pending, name)
		}
	}
	if len(s.pending) > 0 {
		if waited := c.clock.Since(s.started); waited > InitialSyncTimeout {
			klog.InfoS("Serving imports without every member after the initial sync timeout", "waiting", sortedNames(s.pending), "timeout", InitialSyncTimeout)
		} else {
			return fmt.Errorf("waiting for the members of %d Clusters to sync: %v", len(s.pending), sortedNames(s.pending))
		}
	} else if n := c.serviceQueue.Len() + int(s.recomputing.Load()); n > 0 {
		// (A worker that has just taken the last key and not yet
		// counted itself slips through: one import, microseconds late.)
		return fmt.Errorf("%d imports to compute", n)
	}
	s.complete.Store(true)
	return nil
}

func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("and %d more", len(out)-10))
	}
	return out
}
