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
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"k8s.io/utils/ptr"
)

func TestGrace(t *testing.T) {
	def := 30 * time.Second
	for _, tc := range []struct {
		name    string
		seconds *int32
		want    time.Duration
	}{
		{name: "no policy, or the field unset: the server's flag", want: def},
		{name: "zero withdraws at once", seconds: ptr.To[int32](0), want: 0},
		{name: "shorter than the flag", seconds: ptr.To[int32](5), want: 5 * time.Second},
		{name: "longer than the flag", seconds: ptr.To[int32](3600), want: time.Hour},
		{name: "a day, the largest", seconds: ptr.To[int32](86400), want: 24 * time.Hour},
		{name: "negative, stored before validation", seconds: ptr.To[int32](-5), want: 0},
		{name: "huge, stored before validation", seconds: ptr.To[int32](math.MaxInt32), want: 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Grace(tc.seconds, def))
		})
	}
}

func TestAvailable(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ready := Export{Cluster: cluster(1)}
	// down returns the export of cluster n, not Ready for d.
	down := func(n int, d time.Duration) Export {
		return Export{Cluster: cluster(n), NotReadySince: now.Add(-d)}
	}
	keys := func(exports []Export) []string {
		var out []string
		for _, e := range exports {
			out = append(out, e.Cluster.Key)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		exports  []Export
		grace    time.Duration
		want     []string
		wantNext time.Time
	}{
		{name: "nothing", grace: time.Minute},
		{name: "Ready clusters never run out", exports: []Export{ready}, grace: 0, want: []string{key(1)}},
		{name: "zero grace withdraws at once", exports: []Export{ready, down(2, 0)}, grace: 0, want: []string{key(1)}},
		{name: "within the grace, kept until it ends", exports: []Export{ready, down(2, 10*time.Second)}, grace: 30 * time.Second,
			want: []string{key(1), key(2)}, wantNext: now.Add(20 * time.Second)},
		{name: "the grace ends exactly now", exports: []Export{down(2, 30*time.Second)}, grace: 30 * time.Second},
		{name: "past the grace", exports: []Export{ready, down(2, time.Hour)}, grace: 30 * time.Second, want: []string{key(1)}},
		{name: "the earliest end is next", exports: []Export{down(3, 5*time.Second), down(2, 20*time.Second), down(4, time.Hour)},
			grace: 30 * time.Second, want: []string{key(3), key(2)}, wantNext: now.Add(10 * time.Second)},
		{name: "a day's grace keeps a member down for hours", exports: []Export{down(2, 5*time.Hour)}, grace: 24 * time.Hour,
			want: []string{key(2)}, wantNext: now.Add(19 * time.Hour)},
		{name: "a time ahead of the clock counts from now", exports: []Export{down(2, -time.Hour)}, grace: 30 * time.Second,
			want: []string{key(2)}, wantNext: now.Add(30 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]Export(nil), tc.exports...)
			got, next := Available(in, tc.grace, now)
			assert.Equal(t, tc.want, keys(got))
			assert.Equal(t, tc.wantNext, next)
			assert.Equal(t, tc.exports, in, "the input is not changed")
			if len(got) > 0 && len(in) > 0 {
				assert.NotSame(t, &got[0], &in[0], "the result is a slice of its own")
			}
		})
	}
}
