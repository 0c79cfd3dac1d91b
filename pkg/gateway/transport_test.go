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
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countedServer is a loopback HTTP server that counts the connections
// it accepted and those closed.
type countedServer struct {
	*httptest.Server
	opened, closed atomic.Int32
}

func newCountedServer(t *testing.T, h http.HandlerFunc) *countedServer {
	s := &countedServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// testTransport is an inline transport as NewGateway makes it, whose two
// halves count their dials.
type testTransport struct {
	*inlineTransport
	inlineDials, nextDials atomic.Int32
}

func newTestTransport(t *testing.T, tune func(*inlineTransport)) *testTransport {
	tt := &testTransport{}
	d := &net.Dialer{Timeout: time.Second}
	tt.inlineTransport = &inlineTransport{
		next: &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tt.nextDials.Add(1)
			return d.DialContext(ctx, network, addr)
		}},
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tt.inlineDials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		responseHeaderTimeout:  5 * time.Second,
		idleTimeout:            time.Minute,
		maxIdlePerHost:         4,
		maxResponseHeaderBytes: 64 << 10,
	}
	if tune != nil {
		tune(tt.inlineTransport)
	}
	t.Cleanup(tt.CloseIdleConnections)
	return tt
}

func (tt *testTransport) get(t *testing.T, method, url string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	resp, err := tt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	return resp, string(b), err
}

func (tt *testTransport) idleConns() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	n := 0
	for _, l := range tt.idle {
		n += len(l)
	}
	return n
}

// TestInlineTransportKeepsConnectionsAlive: every kind of response read to
// its end leaves its connection for the next request, but one the backend
// means to close.
func TestInlineTransportKeepsConnectionsAlive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		handle func(w http.ResponseWriter)
		body   string
		conns  int32
	}{
		{name: "content length", method: "GET", handle: func(w http.ResponseWriter) { _, _ = io.WriteString(w, "hello") }, body: "hello", conns: 1},
		{name: "chunked", method: "GET", handle: func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, "hel")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "lo")
		}, body: "hello", conns: 1},
		{name: "no content", method: "GET", handle: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }, conns: 1},
		{name: "head", method: "HEAD", handle: func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "5")
		}, conns: 1},
		{name: "informational first", method: "GET", handle: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "hello")
		}, body: "hello", conns: 1},
		{name: "backend closes", method: "GET", handle: func(w http.ResponseWriter) {
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "hello")
		}, body: "hello", conns: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) { tc.handle(w) })
			tt := newTestTransport(t, nil)
			for range 3 {
				resp, body, err := tt.get(t, tc.method, s.URL+"/x", nil)
				require.NoError(t, err)
				assert.Less(t, resp.StatusCode, 300)
				assert.Equal(t, tc.body, body)
			}
			assert.Equal(t, tc.conns, s.opened.Load(), "connections the backend accepted for 3 requests")
			assert.Equal(t, tc.conns, tt.inlineDials.Load())
			assert.Zero(t, tt.nextDials.Load(), "bodiless requests stay inline")
		})
	}
}

// TestInlineTransportRequestsWithBodies: a request with a body, or one
// that switches protocols, goes through http.Transport.
func TestInlineTransportRequestsWithBodies(t *testing.T) {
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	tt := newTestTransport(t, nil)
	_, body, err := tt.get(t, "POST", s.URL, strings.NewReader("upload"))
	require.NoError(t, err)
	assert.Equal(t, "upload", body)
	assert.Equal(t, int32(1), tt.nextDials.Load())
	assert.Zero(t, tt.inlineDials.Load())
}

// TestInlineTransportUnfinishedBody: a body closed before its end leaves
// the connection in the middle of a response: it is closed, and closing
// does not wait for a body that never ends.
func TestInlineTransportUnfinishedBody(t *testing.T) {
	gone := make(chan struct{})
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(gone)
	})
	tt := newTestTransport(t, nil)
	req, _ := http.NewRequest("GET", s.URL, nil)
	resp, err := tt.RoundTrip(req)
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	closed := make(chan error)
	go func() { closed <- resp.Body.Close() }()
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("closing an endless body blocked")
	}
	assert.Zero(t, tt.idleConns(), "a connection in the middle of a response is not kept")
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not see its connection closed")
	}
}

// TestInlineTransportStaleConnection: a kept-alive connection the backend
// closed while idle costs nothing to a request that may be sent twice;
// one that may not gets the error.
func TestInlineTransportStaleConnection(t *testing.T) {
	for _, tc := range []struct {
		method  string
		wantErr bool
	}{
		{method: "GET"},
		{method: "HEAD"},
		{method: "DELETE", wantErr: true},
		{method: "POST", wantErr: true},
	} {
		t.Run(tc.method, func(t *testing.T) {
			s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
			tt := newTestTransport(t, nil)
			_, _, err := tt.get(t, "GET", s.URL, nil)
			require.NoError(t, err)
			require.Equal(t, 1, tt.idleConns())
			s.CloseClientConnections()
			require.Eventually(t, func() bool { return s.closed.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
			resp, _, err := tt.get(t, tc.method, s.URL, nil)
			if tc.wantErr {
				require.Error(t, err)
				assert.ErrorIs(t, err, errClosedByPeer)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, int32(2), tt.inlineDials.Load(), "sent again on a new connection")
		})
	}
}

// TestInlineTransportRefusesHostileResponses: what a backend sends is
// bounded: its headers' size, their delay and its informational
// responses.
func TestInlineTransportRefusesHostileResponses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handle  http.HandlerFunc
		tune    func(*inlineTransport)
		timeout bool
		want    string
	}{
		{name: "huge headers", handle: func(w http.ResponseWriter, r *http.Request) {
			for i := range 100 {
				w.Header().Set("X-Filler-"+strings.Repeat("a", i), strings.Repeat("b", 1000))
			}
		}, want: errHeadersTooLarge.Error()},
		{name: "slow headers", handle: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, tune: func(t *inlineTransport) { t.responseHeaderTimeout = 100 * time.Millisecond }, timeout: true, want: "timeout awaiting response headers"},
		{name: "endless informational responses", handle: func(w http.ResponseWriter, r *http.Request) {
			for range maxInformational + 1 {
				w.WriteHeader(http.StatusEarlyHints)
			}
		}, want: "informational responses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCountedServer(t, tc.handle)
			tt := newTestTransport(t, tc.tune)
			_, _, err := tt.get(t, "GET", s.URL, nil)
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.want)
			var ne net.Error
			assert.Equal(t, tc.timeout, errors.As(err, &ne) && ne.Timeout(), "a timeout is one, for a 504: %v", err)
			assert.Zero(t, tt.idleConns())
		})
	}
}

// TestInlineTransportClientGone: a request whose client went away stops
// at once, and its connection is not kept.
func TestInlineTransportClientGone(t *testing.T) {
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tt := newTestTransport(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL, nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := tt.RoundTrip(req)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Zero(t, tt.idleConns())
}

// TestInlineTransportIdleConnections: idle connections are bounded per
// backend and closed once idle for long.
func TestInlineTransportIdleConnections(t *testing.T) {
	var inFlight sync.WaitGroup
	inFlight.Add(3)
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		inFlight.Done()
		inFlight.Wait()
		_, _ = io.WriteString(w, "ok")
	})
	tt := newTestTransport(t, func(t *inlineTransport) {
		t.maxIdlePerHost = 2
		t.idleTimeout = 200 * time.Millisecond
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, _, err := tt.get(t, "GET", s.URL, nil)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, int32(3), s.opened.Load(), "three requests at once take three connections")
	assert.Equal(t, 2, tt.idleConns(), "two are kept")
	require.Eventually(t, func() bool { return s.closed.Load() == 3 && tt.idleConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"idle connections are closed after the idle timeout")
}
