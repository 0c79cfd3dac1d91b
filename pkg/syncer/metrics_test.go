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
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-base/metrics/legacyregistry"
)

// seriesOf returns the names of the metrics with a series of cluster.
func seriesOf(t *testing.T, cluster string) []string {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" && l.GetValue() == cluster {
					names = append(names, f.GetName())
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

// joined makes the series a member makes: its queue's, and those of its
// writes, reconciles and sync.
func joined(s *Syncer, cluster string) workqueue.TypedRateLimitingInterface[serviceKey] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[cluster] = &member{name: cluster}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[serviceKey](),
		workqueue.TypedRateLimitingQueueConfig[serviceKey]{Name: memberQueuePrefix + cluster, MetricsProvider: memberQueueMetrics{}})
	q.Add(serviceKey{"ns", "svc"})
	q.AddRateLimited(serviceKey{"ns", "other"})
	k, _ := q.Get()
	q.Done(k)
	writesTotal.WithLabelValues(cluster, "serviceimports", "apply").Inc()
	reconcilesTotal.WithLabelValues(cluster, "success").Inc()
	memberSynced.WithLabelValues(cluster).Set(1)
	return q
}

func left(s *Syncer, cluster string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, cluster)
}

// The series of a member go once it has left for longer than its cleanup
// may last; those of a member that stays, or comes back, stay.
func TestDepartedMembersSeriesAreDeleted(t *testing.T) {
	registerMetrics()
	const margin = time.Minute
	for _, tc := range []struct {
		name string
		// run joins and leaves the cluster, sweeping at times after t0,
		// and says whether its series should remain.
		run func(s *Syncer, cluster string, sweep func(after time.Duration)) bool
	}{
		{name: "a member stays", run: func(s *Syncer, cluster string, sweep func(time.Duration)) bool {
			sweep(0)
			sweep(time.Hour)
			return true
		}},
		{name: "a member leaves", run: func(s *Syncer, cluster string, sweep func(time.Duration)) bool {
			left(s, cluster)
			sweep(0)
			// Its cleanup may still count writes.
			writesTotal.WithLabelValues(cluster, "ingresses", "delete").Inc()
			sweep(s.opts.CleanupTimeout)
			sweep(s.opts.CleanupTimeout + margin)
			return false
		}},
		{name: "a member leaves and comes back", run: func(s *Syncer, cluster string, sweep func(time.Duration)) bool {
			left(s, cluster)
			sweep(0)
			joined(s, cluster).ShutDown()
			sweep(s.opts.CleanupTimeout + margin)
			sweep(2 * (s.opts.CleanupTimeout + margin))
			return true
		}},
		{name: "a member comes back after its series went", run: func(s *Syncer, cluster string, sweep func(time.Duration)) bool {
			left(s, cluster)
			sweep(0)
			sweep(s.opts.CleanupTimeout + margin)
			joined(s, cluster).ShutDown()
			sweep(2 * (s.opts.CleanupTimeout + margin))
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Syncer{opts: Options{CleanupTimeout: 2 * time.Minute}, members: map[string]*member{}}
			cluster := "cluster-" + tc.name
			joined(s, cluster).ShutDown()
			all := seriesOf(t, cluster)
			assert.Equal(t, []string{
				"fedmesh_syncer_member_synced",
				"fedmesh_syncer_member_workqueue_adds_total",
				"fedmesh_syncer_member_workqueue_depth",
				"fedmesh_syncer_member_workqueue_longest_running_processor_seconds",
				"fedmesh_syncer_member_workqueue_queue_duration_seconds",
				"fedmesh_syncer_member_workqueue_retries_total",
				"fedmesh_syncer_member_workqueue_unfinished_work_seconds",
				"fedmesh_syncer_member_workqueue_work_duration_seconds",
				"fedmesh_syncer_reconciles_total",
				"fedmesh_syncer_writes_total",
			}, all)

			t0 := time.Now()
			remain := tc.run(s, cluster, func(after time.Duration) { s.sweepMemberSeries(t0.Add(after), margin) })
			memberSeries.mu.Lock()
			_, followed := memberSeries.departed[cluster]
			memberSeries.mu.Unlock()
			if remain {
				assert.Equal(t, all, seriesOf(t, cluster))
				assert.True(t, followed)
				return
			}
			assert.Empty(t, seriesOf(t, cluster))
			assert.False(t, followed, "a forgotten cluster is no longer followed")
		})
	}
}
