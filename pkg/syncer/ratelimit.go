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
	"net/http"
	"strconv"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// adaptiveLimiter is the client-side rate limit of one member: a token
// bucket whose rate follows what the member's API Priority and Fairness
// tells. It starts at its ceiling; a 429 (Too Many Requests) halves the
// rate, at most once per decreaseEvery since the requests in flight when
// the member started refusing all come back refused together, and holds
// every request of the member until the Retry-After the member gave has
// passed. Answers that are not 429 grow the rate back additively, by
// about increasePerSecond each second the member is kept busy, up to the
// ceiling: a member that refused once is approached slowly again.
//
// client-go still does its part: on a 429 with Retry-After it sleeps and
// retries the request (up to ten times), through this limiter.
type adaptiveLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	qps     float64
	ceiling float64
	floor   float64
	burst   float64
	// increasePerSecond is the additive increase, in QPS per second of
	// requests at the current rate.
	increasePerSecond float64
	// tokens is the bucket at last; it goes negative as requests reserve
	// the tokens of the future.
	tokens float64
	last   time.Time
	// notBefore is when the member said, by Retry-After, it may be asked
	// again.
	notBefore    time.Time
	lastDecrease time.Time
	stopped      bool

	// throttled counts the 429s seen, for the member's metrics.
	throttled func()
}

const (
	// decreaseEvery bounds how often 429s halve the rate.
	decreaseEvery = time.Second
	// floorQPS is the rate no 429 takes the limiter below.
	floorQPS = 5
	// maxRetryAfter bounds how long a Retry-After holds the member's
	// requests, whatever a member says.
	maxRetryAfter = 30 * time.Second
)

var _ flowcontrol.RateLimiter = &adaptiveLimiter{}

// newAdaptiveLimiter returns a limiter at qps, its ceiling, with burst.
func newAdaptiveLimiter(qps float64, burst int) *adaptiveLimiter {
	return newAdaptiveLimiterWithClock(qps, burst, time.Now)
}

func newAdaptiveLimiterWithClock(qps float64, burst int, now func() time.Time) *adaptiveLimiter {
	qps = max(qps, floorQPS)
	b := float64(max(burst, 1))
	return &adaptiveLimiter{
		now: now, qps: qps, ceiling: qps, floor: floorQPS, burst: b, tokens: b, last: now(),
		// From half the ceiling back to it in about 20 s of steady use.
		increasePerSecond: max(qps/40, 1),
	}
}

// refill adds the tokens earned since last; mu is held.
func (l *adaptiveLimiter) refill(now time.Time) {
	if now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.qps)
		l.last = now
	}
}

// reserve takes a token and returns how long to wait before using it.
func (l *adaptiveLimiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.refill(now)
	l.tokens--
	var wait time.Duration
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.qps * float64(time.Second))
	}
	if hold := l.notBefore.Sub(now); hold > wait {
		wait = hold
	}
	return wait
}

// Wait returns once the request may be sent, or with ctx's error.
func (l *adaptiveLimiter) Wait(ctx context.Context) error {
	wait := l.reserve()
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept waits for a token.
func (l *adaptiveLimiter) Accept() { _ = l.Wait(context.Background()) }

// TryAccept takes a token if one is there now.
func (l *adaptiveLimiter) TryAccept() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.stopped || now.Before(l.notBefore) {
		return false
	}
	l.refill(now)
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// Stop makes TryAccept refuse.
func (l *adaptiveLimiter) Stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// QPS is the current rate.
func (l *adaptiveLimiter) QPS() float32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float32(l.qps)
}

// throttledBy records a 429 of the member that asked to wait retryAfter
// (0 when it did not say).
func (l *adaptiveLimiter) throttledBy(retryAfter time.Duration) {
	l.mu.Lock()
	now := l.now()
	l.refill(now)
	if now.Sub(l.lastDecrease) >= decreaseEvery {
		l.qps = max(l.floor, l.qps/2)
		l.lastDecrease = now
		// No burst on top of a refusal.
		l.tokens = min(l.tokens, 0)
	}
	if retryAfter > 0 {
		if until := now.Add(min(retryAfter, maxRetryAfter)); until.After(l.notBefore) {
			l.notBefore = until
		}
	}
	f := l.throttled
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// answered records an answer of the member that was not a refusal.
func (l *adaptiveLimiter) answered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.qps < l.ceiling {
		// qps answers a second at the current rate make one second's
		// increase.
		l.qps = min(l.ceiling, l.qps+l.increasePerSecond/l.qps)
	}
}

// wrapTransport reports the member's answers to the limiter.
func (l *adaptiveLimiter) wrapTransport(rt http.RoundTripper) http.RoundTripper {
	return &limiterTransport{l: l, rt: rt}
}

type limiterTransport struct {
	l  *adaptiveLimiter
	rt http.RoundTripper
}

func (t *limiterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusTooManyRequests:
		t.l.throttledBy(retryAfter(resp.Header.Get("Retry-After")))
	case resp.StatusCode < http.StatusInternalServerError:
		t.l.answered()
	}
	return resp, err
}

// WrappedRoundTripper lets client-go reach the transport beneath, to
// cancel a request that timed out.
func (t *limiterTransport) WrappedRoundTripper() http.RoundTripper { return t.rt }

var _ utilnet.RoundTripperWrapper = &limiterTransport{}

// retryAfter parses a Retry-After header of seconds, as kube-apiserver
// sends it; anything else is 0.
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s <= 0 {
		return 0
	}
	// Bounded before the multiplication, which a member's huge value
	// would overflow into a negative duration, that is, no wait at all.
	if s > int(maxRetryAfter/time.Second) {
		return maxRetryAfter
	}
	return time.Duration(s) * time.Second
}

// limitConfig makes every client of cfg share the limiter l and report to
// it.
func limitConfig(cfg *rest.Config, l *adaptiveLimiter) {
	cfg.RateLimiter = l
	cfg.Wrap(l.wrapTransport)
}
