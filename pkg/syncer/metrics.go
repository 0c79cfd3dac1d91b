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
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	// The workqueues report their depth and latency as workqueue_* metrics,
	// one series per member queue.
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

func registerMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(writesTotal, reconcilesTotal, memberSynced, leading)
	})
}
