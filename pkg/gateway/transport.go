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
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// inlineTransport sends a request without a body, and reads its response
// headers, on the goroutine of the request, over kept-alive HTTP/1.1
// connections of its own.
//
// http.Transport hands every request to its connection's write goroutine
// and takes the response back from the connection's read goroutine. On a
// machine whose cores the gateway shares with its clients and backends,
// each hand-off wakes a sleeping thread, and those wake-ups, not the
// proxying, made most of the gateway's added latency (make bench). The
// requests of a proxy are mostly bodiless, and for them the exchange is a
// write then a read, which needs no second goroutine.
//
// A request with a body, or one that asks to switch protocols, goes to
// next, an http.Transport: it writes the body while it reads the
// response, as a backend that answers a streamed upload as it reads it
// needs.
type inlineTransport struct {
	next                   *http.Transport
	dial                   func(ctx context.Context, network, addr string) (net.Conn, error)
	responseHeaderTimeout  time.Duration
	idleTimeout            time.Duration
	maxIdlePerHost         int
	maxResponseHeaderBytes int64

	mu   sync.Mutex
	idle map[string][]*inlineConn
}

// inlineConn is one kept-alive connection to a backend.
type inlineConn struct {
	t    *inlineTransport
	addr string
	conn net.Conn
	// limit bounds what br may read from conn: the response headers'
	// size while they are read, unbounded for the body.
	limit *limitedReader
	br    *bufio.Reader
	bw    *bufio.Writer
	// idleTimer closes the connection once it has been idle for the
	// transport's idleTimeout.
	idleTimer *time.Timer
}

// maxInformational bounds the informational responses (1xx) a backend
// may send before its response, as http.Transport does.
const maxInformational = 5

// errHeadersTooLarge: a backend's response headers exceed the limit.
var errHeadersTooLarge = errors.New("the backend's response headers are too large")

// limitedReader reads from r until n bytes are left, then fails.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Body != nil && req.Body != http.NoBody) || req.Header.Get("Upgrade") != "" || req.URL.Scheme != "http" {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	for {
		c, reused, err := t.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		c.close()
		// A kept-alive connection the backend closed while it was idle
		// fails before any byte of a response: the request is sent again
		// on another, if sending it twice is harmless, as http.Transport
		// does.
		if reused && ctx.Err() == nil && idempotent(req.Method) && errors.Is(err, errClosedByPeer) {
			continue
		}
		return nil, err
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// errClosedByPeer: the backend closed or reset the connection before it
// sent a byte of a response.
var errClosedByPeer = errors.New("the backend closed the connection before it answered")

// closedByPeer reports whether err, met when no byte of a response was
// received, is the end of a connection the peer closed: an end of file
// where a response should start, or a reset.
func closedByPeer(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op != "dial" && !op.Timeout()
}

// conn returns an idle connection to addr, or dials one.
func (t *inlineTransport) conn(ctx context.Context, addr string) (*inlineConn, bool, error) {
	t.mu.Lock()
	if n := len(t.idle[addr]); n > 0 {
		// The most recently used: the others are the first to expire.
		c := t.unkeep(addr, n-1)
		t.mu.Unlock()
		c.idleTimer.Stop()
		return c, true, nil
	}
	t.mu.Unlock()
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c := &inlineConn{t: t, addr: addr, conn: conn, limit: &limitedReader{r: conn, n: math.MaxInt64}}
	c.br = bufio.NewReaderSize(c.limit, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	c.idleTimer = time.AfterFunc(math.MaxInt64, c.expire)
	c.idleTimer.Stop()
	return c, false, nil
}

// put keeps c for the next request to its backend, or closes it when
// enough are kept.
func (t *inlineTransport) put(c *inlineConn) {
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*inlineConn{}
	}
	if len(t.idle[c.addr]) >= t.maxIdlePerHost {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	t.mu.Unlock()
	c.idleTimer.Reset(t.idleTimeout)
}

// remove takes c out of the idle connections; it reports whether c was
// there.
func (t *inlineTransport) remove(c *inlineConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.Index(t.idle[c.addr], c)
	if i < 0 {
		return false
	}
	t.unkeep(c.addr, i)
	return true
}

// unkeep takes the idle connection at index i of addr's out of the idle
// connections and returns it. t.mu is held.
func (t *inlineTransport) unkeep(addr string, i int) *inlineConn {
	list := t.idle[addr]
	c := list[i]
	if list = slices.Delete(list, i, i+1); len(list) == 0 {
		delete(t.idle, addr)
	} else {
		t.idle[addr] = list
	}
	return c
}

// CloseIdleConnections closes the kept-alive connections of both
// transports.
func (t *inlineTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.idleTimer.Stop()
			c.close()
		}
	}
	t.next.CloseIdleConnections()
}

// expire closes c if it is still idle.
func (c *inlineConn) expire() {
	if c.t.remove(c) {
		c.close()
	}
}

func (c *inlineConn) close() { _ = c.conn.Close() }

// roundTrip writes req and reads its response headers. The response's
// body, read by the caller, gives the connection back when it ends.
func (c *inlineConn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// A request whose client went away stops at once, wherever it is.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		if closedByPeer(err) {
			err = fmt.Errorf("%w: %w", errClosedByPeer, err)
		}
		return fail(err)
	}
	if c.t.responseHeaderTimeout > 0 {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.t.responseHeaderTimeout))
	}
	var resp *http.Response
	for informational := 0; ; informational++ {
		c.limit.n = c.t.maxResponseHeaderBytes
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if received := c.t.maxResponseHeaderBytes - c.limit.n; informational == 0 && received == 0 && closedByPeer(err) {
				err = fmt.Errorf("%w: %w", errClosedByPeer, err)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				err = fmt.Errorf("timeout awaiting response headers: %w", err)
			}
			return fail(err)
		}
		// Informational answers (100 Continue, 103 Early Hints) precede
		// the response; a request without a body expects none of them.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if informational == maxInformational {
				return fail(fmt.Errorf("more than %d informational responses", maxInformational))
			}
			continue
		}
		break
	}
	c.limit.n = math.MaxInt64
	if c.t.responseHeaderTimeout > 0 {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	reusable := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody || resp.Body == nil {
		c.done(stop, reusable)
		return resp, nil
	}
	resp.Body = &inlineBody{body: resp.Body, c: c, stop: stop, reusable: reusable}
	return resp, nil
}

// done ends an exchange: c goes back to the idle connections if the
// response was read to its end and nothing follows it.
func (c *inlineConn) done(stop func() bool, reusable bool) {
	if !stop() {
		// The request's context ended: the deadline may be set, or about
		// to be.
		reusable = false
	}
	if reusable && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close()
}

// inlineBody is the body of a response of an inline connection.
type inlineBody struct {
	body     io.ReadCloser
	c        *inlineConn
	stop     func() bool
	reusable bool
	once     sync.Once
}

func (b *inlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.once.Do(func() { b.c.done(b.stop, b.reusable) })
	}
	return n, err
}

// Close ends the exchange: a body not read to its end leaves the
// connection in the middle of a response, so it is closed.
func (b *inlineBody) Close() error {
	b.once.Do(func() { b.c.done(b.stop, false) })
	return nil
}
