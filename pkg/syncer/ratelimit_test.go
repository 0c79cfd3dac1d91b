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
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) step(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock            { return &fakeClock{t: time.Unix(1_000_000, 0)} }
func reserveN(l *adaptiveLimiter, n int) (w time.Duration) {
	for range n {
		w = l.reserve()
	}
	return w
}

func TestAdaptiveLimiter(t *testing.T) {
	tests := []struct {
		name string
		// run acts on a limiter of 100 QPS, burst 10, and returns the wait
		// of the last reservation.
		run      func(l *adaptiveLimiter, c *fakeClock) time.Duration
		wantQPS  float64
		wantWait time.Duration
	}{{
		name:     "the burst passes at once",
		run:      func(l *adaptiveLimiter, c *fakeClock) time.Duration { return reserveN(l, 10) },
		wantQPS:  100,
		wantWait: 0,
	}, {
		name:     "past the burst, requests are spaced at the rate",
		run:      func(l *adaptiveLimiter, c *fakeClock) time.Duration { return reserveN(l, 12) },
		wantQPS:  100,
		wantWait: 20 * time.Millisecond,
	}, {
		name: "a 429 halves the rate and holds requests until Retry-After",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			l.throttledBy(2 * time.Second)
			return l.reserve()
		},
		wantQPS:  50,
		wantWait: 2 * time.Second,
	}, {
		name: "429s of the requests in flight together halve the rate once",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			for range 8 {
				l.throttledBy(0)
			}
			return l.reserve()
		},
		wantQPS: 50,
		// No burst after a refusal: the bucket is empty, the next token
		// comes at the halved rate.
		wantWait: 20 * time.Millisecond,
	}, {
		name: "429s a second apart halve it again, down to the floor",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			for range 10 {
				l.throttledBy(0)
				c.step(decreaseEvery)
			}
			return 0
		},
		wantQPS: floorQPS,
	}, {
		name: "a Retry-After is bounded",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			l.throttledBy(time.Hour)
			c.step(decreaseEvery)
			l.throttledBy(0)
			return l.reserve()
		},
		wantQPS:  25,
		wantWait: maxRetryAfter - decreaseEvery,
	}, {
		name: "answers grow the rate back by increasePerSecond a second of use",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			l.throttledBy(0)
			// A second's worth of answers at 50 QPS.
			for range 50 {
				l.answered()
			}
			return 0
		},
		// 100/40 = 2.5 QPS a second, give or take the growth within it.
		wantQPS: 52.4375,
	}, {
		name: "never above the ceiling",
		run: func(l *adaptiveLimiter, c *fakeClock) time.Duration {
			for range 1000 {
				l.answered()
			}
			return 0
		},
		wantQPS: 100,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			l := newAdaptiveLimiterWithClock(100, 10, c.now)
			wait := tt.run(l, c)
			if got := float64(l.QPS()); !(got > tt.wantQPS-0.01 && got < tt.wantQPS+0.01) {
				t.Errorf("QPS = %v, want %v", got, tt.wantQPS)
			}
			if d := wait - tt.wantWait; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("wait = %v, want %v", wait, tt.wantWait)
			}
		})
	}
}

// TestAdaptiveLimiterOnLoopback runs a real client against a server on
// loopback that refuses with 429 and Retry-After, as a member's API
// Priority and Fairness does: client-go retries after the Retry-After,
// through the limiter, which halved its rate and held the retry.
func TestAdaptiveLimiterOnLoopback(t *testing.T) {
	var requests, refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if refused.Load() < 2 {
			refused.Add(1)
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"x"}}`))
	}))
	defer srv.Close()

	l := newAdaptiveLimiter(100, 10)
	var throttled atomic.Int32
	l.throttled = func() { throttled.Add(1) }
	cfg := &rest.Config{Host: srv.URL}
	limitConfig(cfg, l)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := kube.CoreV1().Namespaces().Get(ctx, "x", metav1.GetOptions{}); err != nil {
		t.Fatalf("the request failed rather than being retried: %v", err)
	}
	elapsed := time.Since(start)
	if got := requests.Load(); got != 3 {
		t.Errorf("the server saw %d requests, want 3 (two refused, then the one answered)", got)
	}
	if got := throttled.Load(); got != 2 {
		t.Errorf("the limiter saw %d refusals, want 2", got)
	}
	// Two Retry-After of a second each, slept by client-go and held by
	// the limiter: not added to each other.
	if elapsed < 2*time.Second {
		t.Errorf("the request took %v; the member asked to wait 1 s twice", elapsed)
	}
	// The refusals came a second apart: each halved the rate; the answer
	// grew it back a little.
	if got := l.QPS(); got < 25 || got > 26 {
		t.Errorf("QPS = %v, want about 25", got)
	}
}
