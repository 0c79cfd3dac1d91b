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

package imports

import (
	"time"

	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
)

// Grace returns the grace of a service whose GlobalTrafficPolicy sets
// spec.unavailableGraceSeconds to seconds (nil when there is no policy or
// it leaves the field unset): that many seconds, else def, the server's
// --member-unavailable-grace. Validation bounds the field, but a policy
// stored before it did is read as well, so the value is clamped to the
// bounds rather than trusted: a negative grace is 0, a longer one a day.
func Grace(seconds *int32, def time.Duration) time.Duration {
	if seconds == nil {
		return def
	}
	s := min(max(*seconds, 0), validation.MaxUnavailableGraceSeconds)
	return time.Duration(s) * time.Second
}

// Available returns, of the exports of one service, those whose endpoints
// belong in its import at now, and when that answer changes next if no
// input does (the zero time when it never does).
//
// The export of a Ready cluster is available. That of a cluster not Ready
// stays available for grace after the cluster stopped being Ready, so a
// member that misses a probe or restarts its kube-apiserver does not make
// every consumer reroute twice; a grace of 0 withdraws it at once. next is
// the earliest moment a grace runs out, so that the caller recomputes the
// import then, and only then, rather than polling.
//
// It keeps the exports' order and returns a slice of its own; the exports
// themselves are shared, as Compute reads them without changing them.
func Available(exports []Export, grace time.Duration, now time.Time) (available []Export, next time.Time) {
	available = make([]Export, 0, len(exports))
	for _, e := range exports {
		if e.NotReadySince.IsZero() {
			available = append(available, e)
			continue
		}
		// A time after now (a clock that stepped back) counts from now,
		// so the grace is never longer than asked.
		since := e.NotReadySince
		if since.After(now) {
			since = now
		}
		end := since.Add(grace)
		if !now.Before(end) {
			continue
		}
		available = append(available, e)
		if next.IsZero() || end.Before(next) {
			next = end
		}
	}
	return available, next
}
