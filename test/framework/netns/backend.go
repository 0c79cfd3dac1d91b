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

package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPort is the port the walkthrough's httpbin listens on.
const DefaultPort = 8080

// Message is what the walkthrough's httpbin in cluster answers.
func Message(cluster string) string {
	return fmt.Sprintf("Hi, I am from %s and controlled by mesh!\n", cluster)
}

// BackendOptions say what a backend serves.
type BackendOptions struct {
	// Port is the port it listens on in its namespace; DefaultPort when 0.
	Port int
	// Message is the body of every answer, as the walkthrough's pipy
	// script answers every request with one message.
	Message string
	// Handler, when set, serves instead of Message (a bench's payloads).
	Handler http.Handler
}

// Backend is an HTTP server in a network namespace of its own, at an
// address a member's EndpointSlice can name. It can be killed and started
// again on the same address, and made to fail, for failover tests.
type Backend struct {
	ns      *Namespace
	port    int
	handler http.Handler

	// status, when not zero, is answered instead of the handler's.
	status   atomic.Int32
	requests atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

// StartBackend makes a namespace and starts a backend in it. The caller
// must Close it.
func StartBackend(ctx context.Context, opts BackendOptions) (*Backend, error) {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	ns, err := New(ctx)
	if err != nil {
		return nil, err
	}
	b := &Backend{ns: ns, port: opts.Port, handler: opts.Handler}
	if b.handler == nil {
		msg := opts.Message
		b.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
			_, _ = io.WriteString(w, msg)
		})
	}
	if err := b.Start(); err != nil {
		ns.Close()
		return nil, err
	}
	return b, nil
}

// Namespace is the backend's network namespace.
func (b *Backend) Namespace() *Namespace { return b.ns }

// Addr is the address the backend listens on, inside its namespace.
func (b *Backend) Addr() netip.AddrPort { return netip.AddrPortFrom(b.ns.IP, uint16(b.port)) }

// URL is http://Addr/.
func (b *Backend) URL() string { return "http://" + b.Addr().String() + "/" }

// Requests counts the requests the backend has answered.
func (b *Backend) Requests() int64 { return b.requests.Load() }

// SetStatus makes the backend answer every request with code and an empty
// body, as a failing one does; 0 makes it serve again.
func (b *Backend) SetStatus(code int) { b.status.Store(int32(code)) }

// Start starts serving again after Kill, on the same address. It is a no-op
// when the backend serves.
func (b *Backend) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	ln, err := b.ns.Listen(b.port)
	if err != nil {
		return fmt.Errorf("listen on %s in %s: %w", b.Addr(), b.ns.Name, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.requests.Add(1)
			if code := b.status.Load(); code != 0 {
				w.WriteHeader(int(code))
				return
			}
			b.handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          nil,
	}
	b.srv = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			// Serve returns only when the listener fails; the backend is
			// then down, as a crashed one is.
			b.mu.Lock()
			if b.srv == srv {
				b.srv = nil
			}
			b.mu.Unlock()
		}
	}()
	return nil
}

// Kill stops the backend at once, as a crashed process: its listener and
// every connection, idle or in flight, are closed, and connections are
// refused until Start.
func (b *Backend) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

// Serving tells whether the backend is started.
func (b *Backend) Serving() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// Close kills the backend and removes its namespace.
func (b *Backend) Close() error {
	b.Kill()
	return b.ns.Close()
}
