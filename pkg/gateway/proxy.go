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
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/pkg/routing"
)

// ServedByHeader names, on every response a backend gave, the key of the
// cluster that served it.
const ServedByHeader = "Fedmesh-Served-By"

// The listeners, as metrics label them.
const (
	ListenerIngress = "ingress"
	ListenerEgress  = "egress"
)

// maxResponseHeaderBytes bounds the response headers of a backend.
const maxResponseHeaderBytes = 1 << 20

// maxExplainBytes bounds the body of a 503: an explanation names every
// cluster considered, and messages the control plane relayed.
const maxExplainBytes = 16 << 10

// ProxyOptions tune the gateway's proxying.
type ProxyOptions struct {
	// Cluster is the key of the gateway's member.
	Cluster string
	// ClusterDomain is the members' DNS domain, as in
	// NAME.NAMESPACE.svc.ClusterDomain.
	ClusterDomain string
	// DialTimeout bounds a connection to a backend.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers once the request is sent.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes kept-alive backend connections left idle.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections to keep per
	// backend.
	MaxIdleConnsPerHost int
	// EjectBase and EjectMax are the first and the longest ejection of a
	// failing backend.
	EjectBase, EjectMax time.Duration
	// MaxAttempts bounds the backends tried for one request whose
	// connections are refused.
	MaxAttempts int
}

// DefaultProxyOptions are the defaults of fedmesh-gateway's flags.
func DefaultProxyOptions() ProxyOptions {
	return ProxyOptions{
		ClusterDomain:         "cluster.local",
		DialTimeout:           2 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
		EjectBase:             5 * time.Second,
		EjectMax:              2 * time.Minute,
		MaxAttempts:           3,
	}
}

// Gateway proxies the requests of its two listeners along the routes of
// its current Table.
type Gateway struct {
	opts      ProxyOptions
	table     atomic.Pointer[Table]
	health    *health
	transport *inlineTransport
	proxy     *httputil.ReverseProxy
}

// NewGateway returns a gateway with no table: it answers 503 until
// SetTable gives it one.
func NewGateway(opts ProxyOptions) *Gateway {
	g := &Gateway{opts: opts}
	g.health = newHealth(opts.EjectBase, opts.EjectMax, func(cluster string) {
		ejectionsTotal.WithLabelValues(cluster).Inc()
	})
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	g.transport = &inlineTransport{
		next: &http.Transport{
			// Never the environment's proxy: every destination is a route.
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
			IdleConnTimeout:       opts.IdleConnTimeout,
			ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
			ExpectContinueTimeout: time.Second,
			// The client's Accept-Encoding goes through as it is.
			DisableCompression:     true,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		},
		dial:                   dialer.DialContext,
		responseHeaderTimeout:  opts.ResponseHeaderTimeout,
		idleTimeout:            opts.IdleConnTimeout,
		maxIdlePerHost:         opts.MaxIdleConnsPerHost,
		maxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:      func(*httputil.ProxyRequest) {},
		Transport:    roundTripper{g},
		BufferPool:   bufferPool{},
		ErrorHandler: g.proxyError,
		ErrorLog:     nil,
	}
	return g
}

// SetTable makes t the table of every request that starts from now on.
func (g *Gateway) SetTable(t *Table) {
	g.table.Store(t)
	g.health.forget()
}

// CloseIdleConnections closes the kept-alive backend connections.
func (g *Gateway) CloseIdleConnections() { g.transport.CloseIdleConnections() }

// exchange is what the round tripper needs of one request: its route and
// how to make the backend's path.
type exchange struct {
	listener string
	route    *routing.Route
	// path makes the backend's path and raw path of the request's.
	path func(d routing.Destination, b routing.Backend, path, rawPath string) (string, string)
}

type exchangeKey struct{}

// Ingress is the handler of the ingress listener: the Ingresses of the
// gateway's class, to the local endpoints of their Services.
func (g *Gateway) Ingress() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		start := time.Now()
		g.serveIngress(rec, r)
		observe(ListenerIngress, rec, start)
	})
}

// Egress is the handler of the egress listener: an HTTP forward proxy for
// the federated services, along the routes of pkg/routing.
func (g *Gateway) Egress() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		start := time.Now()
		g.serveEgress(rec, r)
		observe(ListenerEgress, rec, start)
	})
}

func (g *Gateway) serveIngress(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	if t == nil {
		refuse(w, http.StatusServiceUnavailable, "fedmesh-gateway of %s has not read its cluster's objects yet\n", g.opts.Cluster)
		return
	}
	if r.Method == http.MethodConnect || !strings.HasPrefix(r.URL.Path, "/") {
		refuse(w, http.StatusBadRequest, "fedmesh-gateway's ingress serves paths, not %s %s\n", r.Method, r.RequestURI)
		return
	}
	ir := t.matchIngress(r.Host, r.URL.Path)
	if ir == nil {
		refuse(w, http.StatusNotFound, "no Ingress of %s serves path %s\n", g.opts.Cluster, r.URL.Path)
		return
	}
	if len(ir.route.Tiers) == 0 {
		why := ir.why
		if why == "" {
			why = ir.route.Explain()
		}
		refuse(w, http.StatusServiceUnavailable, "Ingress %s routes %s to Service %s port %d, which has no route:\n%s",
			ir.ingress, ir.path, ir.service, ir.port, why)
		return
	}
	g.forward(w, r, &exchange{listener: ListenerIngress, route: ir.route, path: ir.rewrite})
}

// rewrite applies the export's pathRewrite: a request path starting with
// From starts with To instead.
func (ir *ingressRoute) rewrite(_ routing.Destination, _ routing.Backend, path, rawPath string) (string, string) {
	if ir.rewriteFrom == "" {
		return path, rawPath
	}
	return rewritePrefix(path, ir.rewriteFrom, ir.rewriteTo), rewritePrefix(rawPath, ir.rewriteFrom, ir.rewriteTo)
}

func rewritePrefix(p, from, to string) string {
	rest, ok := strings.CutPrefix(p, from)
	if !ok {
		return p
	}
	if strings.HasSuffix(to, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	out := to + rest
	if !strings.HasPrefix(out, "/") {
		out = "/" + out
	}
	return out
}

func (g *Gateway) serveEgress(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		refuse(w, http.StatusMethodNotAllowed, "fedmesh-gateway's egress proxies plain HTTP to federated services; it does not tunnel (CONNECT)\n")
		return
	}
	if r.URL.Scheme != "" && r.URL.Scheme != "http" {
		refuse(w, http.StatusBadRequest, "fedmesh-gateway's egress proxies http:// URLs only, not %s://\n", r.URL.Scheme)
		return
	}
	host := r.URL.Host
	if host == "" {
		host = r.Host
	}
	t := g.table.Load()
	if t == nil {
		refuse(w, http.StatusServiceUnavailable, "fedmesh-gateway of %s has not read its cluster's objects yet\n", g.opts.Cluster)
		return
	}
	key, port, err := parseServiceHost(host, g.opts.ClusterDomain)
	if err != nil {
		refuse(w, http.StatusNotFound, "host %q is not a federated service: %v\n", host, err)
		return
	}
	svc := t.egress[key]
	if svc == nil {
		refuse(w, http.StatusNotFound, "service %s is not federated in %s: it has neither a ServiceImport nor a GlobalTrafficPolicy there\n", key, g.opts.Cluster)
		return
	}
	route := svc.ports[port]
	if route == nil {
		ports := make([]string, 0, len(svc.portList))
		for _, p := range svc.portList {
			ports = append(ports, strconv.Itoa(int(p)))
		}
		refuse(w, http.StatusNotFound, "service %s has no port %d in %s (ports: %s)\n", key, port, g.opts.Cluster, strings.Join(ports, ", "))
		return
	}
	if len(route.Tiers) == 0 {
		refuse(w, http.StatusServiceUnavailable, "no route to service %s port %d from %s\n%s", key, port, g.opts.Cluster, route.Explain())
		return
	}
	// The request goes out in origin form.
	r.RequestURI = ""
	g.forward(w, r, &exchange{listener: ListenerEgress, route: route, path: egressPath})
}

// egressPath is the path at a destination: the request's own at a local
// endpoint; at an exporting cluster's gateway, under the export's path,
// which its ingress serves.
func egressPath(d routing.Destination, b routing.Backend, path, rawPath string) (string, string) {
	if d.Local || b.Path == "" {
		return path, rawPath
	}
	prefix := strings.TrimSuffix(b.Path, "/")
	if rawPath != "" {
		rawPath = prefix + rawPath
	}
	return prefix + path, rawPath
}

func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, x *exchange) {
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
}

// errNoBackend: every backend the request may use was tried.
var errNoBackend = errors.New("no backend left to try")

// upstreamError is a failure of a backend.
type upstreamError struct {
	cluster, address string
	err              error
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("backend %s of %s: %v", e.address, e.cluster, e.err)
}
func (e *upstreamError) Unwrap() error { return e.err }

// roundTripper chooses a backend for each request along its route,
// under passive health, and tries another when a connection is refused
// before anything was sent, if the request can be sent again: it has no
// body, as a request's body is read once and never kept.
type roundTripper struct{ g *Gateway }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	g := rt.g
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil, errors.New("fedmesh-gateway: a request without a route")
	}
	replayable := req.Body == nil || req.Body == http.NoBody
	path, rawPath := req.URL.Path, req.URL.RawPath
	host := req.Host
	var tried []backendKey
	var last error = errNoBackend
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		d, b, ok := g.choose(x.route, tried)
		if !ok {
			break
		}
		tried = append(tried, backendKey{d.Cluster, b})
		out := req
		if attempt > 0 {
			out = req.Clone(req.Context())
		}
		out.URL.Scheme = "http"
		out.URL.Host = b.Address()
		out.URL.Path, out.URL.RawPath = x.path(d, b, path, rawPath)
		if d.Local {
			out.Host = host
		} else {
			out.Host = b.Address()
		}
		start := time.Now()
		resp, err := g.transport.RoundTrip(out)
		upstreamSeconds.WithLabelValues(x.listener).Observe(time.Since(start).Seconds())
		if err != nil {
			if req.Context().Err() != nil {
				// The client went away: no fault of the backend.
				return nil, err
			}
			g.health.failed(d.Cluster, b)
			last = &upstreamError{cluster: d.Cluster, address: b.Address(), err: err}
			if replayable && refused(err) {
				klog.V(4).InfoS("Backend refused a connection; trying another", "cluster", d.Cluster, "backend", b.Address(), "err", err)
				continue
			}
			return nil, last
		}
		if resp.StatusCode >= 500 {
			g.health.failed(d.Cluster, b)
		} else {
			g.health.succeeded(d.Cluster, b)
		}
		resp.Header.Set(ServedByHeader, d.Cluster)
		return resp, nil
	}
	return nil, last
}

// choose picks a destination by weight in the first tier with a usable
// backend not tried yet, and one of its backends at random. When every
// backend is ejected it picks among them all (Envoy's panic routing): a
// route whose every backend failed lately is better tried than refused.
func (g *Gateway) choose(r *routing.Route, tried []backendKey) (routing.Destination, routing.Backend, bool) {
	untried := func(cluster string, b routing.Backend) bool {
		for _, k := range tried {
			if k.cluster == cluster && k.backend == b {
				return false
			}
		}
		return true
	}
	_, tier := r.Select(func(cluster string, b routing.Backend) bool {
		return g.health.usable(cluster, b) && untried(cluster, b)
	})
	if tier == nil {
		_, tier = r.Select(untried)
	}
	if tier == nil {
		return routing.Destination{}, routing.Backend{}, false
	}
	d := tier.Pick(rand.Uint64())
	return d, d.Backends[rand.IntN(len(d.Backends))], true
}

// refused reports whether err is a failure to connect, before any byte
// of the request was sent.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// proxyError answers a request no backend answered.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if r.Context().Err() != nil {
		// The client is gone; nothing to tell it.
		w.WriteHeader(499)
		return
	}
	var ue *upstreamError
	switch {
	case errors.As(err, &ue):
		code := http.StatusBadGateway
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusGatewayTimeout
		}
		refuse(w, code, "fedmesh-gateway of %s: %v\n", g.opts.Cluster, err)
	case x != nil:
		refuse(w, http.StatusServiceUnavailable, "fedmesh-gateway of %s: %v\n%s", g.opts.Cluster, err, x.route.Explain())
	default:
		refuse(w, http.StatusBadGateway, "fedmesh-gateway of %s: %v\n", g.opts.Cluster, err)
	}
}

// refuse answers a request the gateway itself cannot route, in plain
// text for people, escaped and bounded: what it says may carry what a
// member wrote.
func refuse(w http.ResponseWriter, code int, format string, args ...any) {
	body := sanitize(fmt.Sprintf(format, args...), maxExplainBytes)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del(ServedByHeader)
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// sanitize escapes what is not printable (but newlines) and cuts s to at
// most max bytes, on a character boundary.
func sanitize(s string, max int) string {
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				b.WriteString(`\ufffd`)
				continue
			}
		}
		if r == '\n' || (unicode.IsPrint(r) && r != '\u2028' && r != '\u2029') {
			b.WriteRune(r)
		} else {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		if b.Len() > max {
			break
		}
	}
	out := b.String()
	if len(out) > max {
		cut := max - len("…\n")
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…\n"
	}
	return out
}

// recorder keeps the status code of a response, for the metrics.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's flusher.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func observe(listener string, rec *recorder, start time.Time) {
	code := rec.code
	if code == 0 {
		code = http.StatusOK
	}
	requestsTotal.WithLabelValues(listener, strconv.Itoa(code), rec.Header().Get(ServedByHeader)).Inc()
	requestSeconds.WithLabelValues(listener).Observe(time.Since(start).Seconds())
}

// bufferPool lends the proxy its copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
