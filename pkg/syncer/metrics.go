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
	"context"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	// The syncer's own queue of Clusters reports as workqueue_* metrics;
	// the members' queues report as fedmesh_syncer_member_workqueue_*
	// (memberQueueMetrics), so that their series go with their member.
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
)

const metricsSubsystem = "fedmesh_syncer"

var (
	// writesTotal counts every mutating request sent to a member, whatever
	// its outcome. A federation that already matches costs none, which is
	// how idempotence is checked.
	writesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "writes_total",
		Help:           "Mutating requests sent to member clusters, by cluster, resource and verb.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "resource", "verb"})

	// reconcilesTotal counts the services reconciled in each member.
	reconcilesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "reconciles_total",
		Help:           "Services reconciled in member clusters, by cluster and result.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "result"})

	// throttledTotal counts the 429s of each member, each of which slows
	// the syncer's requests to that member (adaptiveLimiter).
	throttledTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_throttled_total",
		Help:           "Requests to member clusters refused with 429 Too Many Requests, by cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})

	// memberSynced is 1 once a member's CRDs are installed, its caches
	// have synced and every service has been queued for it.
	memberSynced = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_synced",
		Help:           "1 when the member's CRDs are installed and its caches synced, else 0.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})

	// leading is 1 while this replica holds the lease.
	leading = metrics.NewGauge(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "leader",
		Help:           "1 while this replica is the leader and writes, else 0.",
		StabilityLevel: metrics.ALPHA,
	})

	registerOnce sync.Once
)

// The metrics of the members' workqueues: those of client-go's workqueues
// (k8s.io/component-base/metrics/prometheus/workqueue), labelled by
// cluster rather than by queue name.
var (
	queueDepth = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_depth",
		Help:           "Current depth of the member's workqueue.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueAdds = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_adds_total",
		Help:           "Total number of adds handled by the member's workqueue.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueLatency = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_queue_duration_seconds",
		Help:           "How long in seconds a service stays in the member's workqueue before being requested.",
		Buckets:        metrics.ExponentialBuckets(10e-9, 10, 10),
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueWorkDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_work_duration_seconds",
		Help:           "How long in seconds reconciling a service of the member's workqueue takes.",
		Buckets:        metrics.ExponentialBuckets(10e-9, 10, 10),
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueUnfinished = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_unfinished_work_seconds",
		Help:           "How many seconds of work in progress of the member's workqueue has not been observed by work_duration.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueLongestRunning = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_longest_running_processor_seconds",
		Help:           "How many seconds the longest running worker of the member's workqueue has been running.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	queueRetries = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "member_workqueue_retries_total",
		Help:           "Total number of retries handled by the member's workqueue.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
)

func registerMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(writesTotal, reconcilesTotal, throttledTotal, memberSynced, leading,
			queueDepth, queueAdds, queueLatency, queueWorkDuration, queueUnfinished, queueLongestRunning, queueRetries)
	})
}

// memberQueuePrefix starts the name of a member's workqueue; the rest is
// the Cluster's name.
const memberQueuePrefix = "member_"

// memberQueueMetrics is the workqueue.MetricsProvider of the members'
// queues. Every member has a queue from its start, so the series it makes
// also tell which clusters have series to forget (memberSeries).
type memberQueueMetrics struct{}

var _ workqueue.MetricsProvider = memberQueueMetrics{}

func queueCluster(name string) string {
	cluster := strings.TrimPrefix(name, memberQueuePrefix)
	memberSeries.track(cluster)
	return cluster
}

func (memberQueueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return queueDepth.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return queueAdds.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return queueLatency.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return queueWorkDuration.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return queueUnfinished.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return queueLongestRunning.WithLabelValues(queueCluster(name))
}

func (memberQueueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return queueRetries.WithLabelValues(queueCluster(name))
}

// memberSeries follows the clusters that may have metric series.
var memberSeries = &clusterSeries{departed: map[string]time.Time{}}

// clusterSeries follows the clusters that may have metric series, so that
// the series of a cluster that left are deleted rather than kept for the
// life of the process.
type clusterSeries struct {
	mu sync.Mutex
	// departed is, for every cluster that may have series, when it was
	// first found not to be a member; zero while it is one.
	departed map[string]time.Time
}

// track notes that cluster is a member, which makes series.
func (c *clusterSeries) track(cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.departed[cluster] = time.Time{}
}

// sweep deletes the series of the clusters found not to be members for
// wait or longer, and forgets them; it returns their names.
func (c *clusterSeries) sweep(now time.Time, wait time.Duration, isMember func(cluster string) bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var forgotten []string
	for cluster, since := range c.departed {
		switch {
		case isMember(cluster):
			c.departed[cluster] = time.Time{}
		case since.IsZero():
			c.departed[cluster] = now
		case now.Sub(since) >= wait:
			deleteSeries(cluster)
			delete(c.departed, cluster)
			forgotten = append(forgotten, cluster)
		}
	}
	return forgotten
}

// deleteSeries deletes every series of cluster.
func deleteSeries(cluster string) {
	labels := map[string]string{"cluster": cluster}
	for _, v := range []*metrics.CounterVec{writesTotal, reconcilesTotal, throttledTotal, queueAdds, queueRetries} {
		if v.IsCreated() {
			v.DeletePartialMatch(labels)
		}
	}
	for _, v := range []*metrics.GaugeVec{memberSynced, queueDepth, queueUnfinished, queueLongestRunning} {
		if v.IsCreated() {
			v.DeletePartialMatch(labels)
		}
	}
	for _, v := range []*metrics.HistogramVec{queueLatency, queueWorkDuration} {
		if v.IsCreated() {
			v.DeletePartialMatch(labels)
		}
	}
}

// memberSeriesSweep is how often the series of departed members are
// looked for.
const memberSeriesSweep = time.Minute

// forgetDepartedMembers deletes, until ctx is done, the metric series of
// the clusters that left the federation. A departed member still counts
// the writes of its cleanup, for at most CleanupTimeout: its series go
// once that is over, a sweep later.
func (s *Syncer) forgetDepartedMembers(ctx context.Context, interval time.Duration) {
	wait.UntilWithContext(ctx, func(context.Context) { s.sweepMemberSeries(time.Now(), interval) }, interval)
}

// sweepMemberSeries deletes the series of the clusters that have not been
// members since a cleanup could have ended, a margin later.
func (s *Syncer) sweepMemberSeries(now time.Time, margin time.Duration) []string {
	// Members are made and their queues' series with them under s.mu:
	// a cluster that comes back is either a member here, or its series
	// are made after they are deleted.
	s.mu.RLock()
	defer s.mu.RUnlock()
	return memberSeries.sweep(now, s.opts.CleanupTimeout+margin, func(cluster string) bool {
		_, ok := s.members[cluster]
		return ok
	})
}
