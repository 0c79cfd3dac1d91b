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

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

const metricsSubsystem = "fedmesh_gateway"

var (
	// requestsTotal counts the requests each listener answered. cluster
	// is the key of the cluster that served, empty when none did (the
	// gateway answered itself, as with a 503 for no route); keys are
	// bounded by the federation's members.
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "requests_total",
		Help:           "Requests answered, by listener, HTTP status code and the cluster that served (empty when no backend did).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"listener", "code", "cluster"})

	requestSeconds = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "request_duration_seconds",
		Help:           "Time from a request's arrival to the end of its response, by listener.",
		Buckets:        metrics.ExponentialBuckets(0.0001, 2, 18),
		StabilityLevel: metrics.ALPHA,
	}, []string{"listener"})

	// upstreamSeconds is the latency of each attempt at a backend, to
	// its response headers.
	upstreamSeconds = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "upstream_duration_seconds",
		Help:           "Time from sending a request to a backend to its response headers, or to its failure, by listener.",
		Buckets:        metrics.ExponentialBuckets(0.0001, 2, 18),
		StabilityLevel: metrics.ALPHA,
	}, []string{"listener"})

	ejectionsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "ejections_total",
		Help:           "Backends ejected by passive health (refused connection, failed request or 5xx), by the cluster they belong to.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})

	routesGauge = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "routes",
		Help:           "Routes of the current table: federated service ports of the egress, Ingress paths of the ingress.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"listener"})

	tableBuildsTotal = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "table_builds_total",
		Help:           "Routing tables computed from the member's objects, one per burst of changes.",
		StabilityLevel: metrics.ALPHA,
	})

	tableBuildSeconds = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "table_build_duration_seconds",
		Help:           "Time to compute a routing table from the member's objects.",
		Buckets:        metrics.ExponentialBuckets(0.0001, 4, 10),
		StabilityLevel: metrics.ALPHA,
	})

	registerOnce sync.Once
)

// RegisterMetrics registers the gateway's metrics in the legacy registry,
// which /metrics serves.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(requestsTotal, requestSeconds, upstreamSeconds, ejectionsTotal, routesGauge, tableBuildsTotal, tableBuildSeconds)
	})
}
