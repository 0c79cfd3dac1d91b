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

// Package chaos is fedmesh's fault suite: each test starts a real
// federation (test/framework), keeps exports being created and deleted at
// a steady rate, inflicts one fault on a real process, and ends by
// asserting, with the invariant checker (test/framework/invariant), that
// the federation converges on the truth within a stated time. Each test
// records its figures as one row of _output/chaos/results.json.
//
// # Adding a fault
//
// A fault test in this package does, in order:
//
//	cfg := chaos.Current()                     // small (make test) or full (make chaos)
//	f := framework.Start(t, chaos.FederationOptions(cfg, ...))
//	chaos.RegisterMembers(t, ctx, f)           // Clusters for every member, Ready
//	churn := chaos.StartChurn(ctx, f, cfg.Churn)
//	watcher := chaos.WatchImports(ctx, f.ControlPlane.Config())  // counts relists
//	start := time.Now()
//	... inflict the fault, measure with chaos.Until / chaos.WaitCluster ...
//	churn.Stop()
//	report := chaos.Converge(t, ctx, f, cfg.ConvergeWithin)   // asserts convergence
//	chaos.Record(t, chaos.Result{Fault: "...", DetectSeconds: chaos.Seconds(d), ...})
//
// Result rows are merged into the results file by fault name, so each
// test adds or replaces its own rows and leaves the others'. A fault that
// misses a target is recorded as it was measured, with a note, and then
// fails the test: the figures are never made to look better than they
// were.
//
// # Configurations
//
// The small configuration runs in make test: few members, a slow churn,
// and only the faults marked small (the others skip, saying so). The full
// one (-full, or FEDMESH_CHAOS=full; make chaos) runs every fault with
// more churn. Results of the small configuration go to
// _output/chaos/results-small.json, so that make test never overwrites
// the figures of make chaos.
package chaos
