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
package loopback

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Balancer is a TCP balancer on 127.0.0.1 that stands in for a Service in
// front of several replicas: each connection it accepts goes to the next
// enabled backend in turn, and its bytes are copied both ways untouched
// (TLS included, so the client verifies the backend's own certificate, as
// through kube-proxy).
//
// A test moves clients between replicas with Drain, which stops sending
// new connections to a backend and cuts the ones it carries, as a pod
// that is deleted or a node that fails would: the clients reconnect, and
// land on another backend. The aggregator keeps one HTTP/2 connection per
// backend Service, so without a drain every request of a control plane
// goes to the same replica.
type Balancer struct {
	l        net.Listener
	backends []string

	mu      sync.Mutex
	enabled []bool
	next    int
	conns   map[*balancedConn]struct{}
	counts  []int
	closed  bool
	serving sync.WaitGroup
}

// balancedConn is one client connection and the backend connection it was
// paired with.
type balancedConn struct {
	backend        int
	client, server net.Conn
}

// dialTimeout bounds a connection to a backend; a backend that does not
// answer in that time is skipped for the next one.
const dialTimeout = 2 * time.Second

// NewBalancer listens on 127.0.0.1:port (a free port when 0) and forwards
// to the backends, which are host:port addresses on loopback, every one
// enabled.
func NewBalancer(port int, backends ...string) (*Balancer, error) {
	if len(backends) == 0 {
		return nil, errors.New("a balancer needs a backend")
	}
	for _, b := range backends {
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", b, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("backend %q is not a loopback address", b)
		}
	}
	l, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return nil, err
	}
	b := &Balancer{
		l:        l,
		backends: append([]string(nil), backends...),
		enabled:  make([]bool, len(backends)),
		counts:   make([]int, len(backends)),
		conns:    map[*balancedConn]struct{}{},
	}
	for i := range b.enabled {
		b.enabled[i] = true
	}
	b.serving.Add(1)
	go b.serve()
	return b, nil
}

// Port is the port the balancer listens on.
func (b *Balancer) Port() int { return b.l.Addr().(*net.TCPAddr).Port }

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.l.Addr().String() }

// Backends are the backends' addresses, in the order the balancer was
// given them; Drain and Enable take an index into them.
func (b *Balancer) Backends() []string { return append([]string(nil), b.backends...) }

// Drain stops sending new connections to backend i and closes those it
// carries now. It returns how many it closed.
func (b *Balancer) Drain(i int) int {
	b.mu.Lock()
	b.enabled[i] = false
	var cut []*balancedConn
	for c := range b.conns {
		if c.backend == i {
			cut = append(cut, c)
		}
	}
	b.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
	return len(cut)
}

// Enable sends new connections to backend i again.
func (b *Balancer) Enable(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.enabled[i] = true
}

// SwitchTo makes backend i the only one that gets new connections, and
// cuts every connection to the others: every client moves to i.
func (b *Balancer) SwitchTo(i int) {
	b.Enable(i)
	for j := range b.backends {
		if j != i {
			b.Drain(j)
		}
	}
}

// EnableAll sends new connections to every backend again, in turn.
func (b *Balancer) EnableAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.enabled {
		b.enabled[i] = true
	}
}

// Connections returns, for each backend, how many connections it has been
// given since the balancer started.
func (b *Balancer) Connections() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.counts...)
}

// Open is how many connections the balancer carries now.
func (b *Balancer) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// Close stops listening and closes every connection.
func (b *Balancer) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	conns := b.conns
	b.conns = map[*balancedConn]struct{}{}
	b.mu.Unlock()
	b.l.Close()
	for c := range conns {
		c.close()
	}
	b.serving.Wait()
}

func (b *Balancer) serve() {
	defer b.serving.Done()
	for {
		conn, err := b.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		// The first backend is picked here, in the order the clients
		// connected, so that the round robin is theirs, not that of the
		// goroutines' scheduling.
		first, ok := b.pick()
		b.serving.Add(1)
		go func() {
			defer b.serving.Done()
			b.forward(conn, first, ok)
		}()
	}
}

// forward pairs a client connection with a backend, trying first (when
// ok), then each enabled one in turn from the next, and copies between
// them until either side ends. A client for whom no backend answers is
// disconnected, as a Service without ready endpoints refuses.
func (b *Balancer) forward(client net.Conn, first int, ok bool) {
	i := first
	for attempt := range b.backends {
		if attempt > 0 {
			i, ok = b.pick()
		}
		if !ok {
			break
		}
		server, err := net.DialTimeout("tcp", b.backends[i], dialTimeout)
		if err != nil {
			continue
		}
		c := &balancedConn{backend: i, client: client, server: server}
		b.mu.Lock()
		if b.closed || !b.enabled[i] {
			// Closed or drained while dialling: the drain must not miss it.
			b.mu.Unlock()
			server.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.counts[i]++
		b.mu.Unlock()
		done := make(chan struct{}, 2)
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			// One direction ended: end both, as a proxy that does not
			// half-close (TLS clients and servers never need it).
			c.close()
			done <- struct{}{}
		}
		go pipe(server, client)
		go pipe(client, server)
		<-done
		<-done
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		return
	}
	client.Close()
}

// pick returns the next enabled backend, round-robin.
func (b *Balancer) pick() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, false
	}
	for range b.backends {
		i := b.next
		b.next = (b.next + 1) % len(b.backends)
		if b.enabled[i] {
			return i, true
		}
	}
	return 0, false
}

func (c *balancedConn) close() {
	c.client.Close()
	c.server.Close()
}
