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
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/routing"
	"github.com/fedmesh/fedmesh/pkg/syncer"
)

// backend is an HTTP server on loopback that says who it is and keeps
// the paths and Host headers it was asked for.
type backend struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	hits []string
	code int
}

func newBackend(t testing.TB, name string) *backend {
	b := &backend{name: name, code: http.StatusOK}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits = append(b.hits, r.Host+" "+r.URL.RequestURI())
		code := b.code
		b.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
		fmt.Fprintf(w, "Hi, I am from %s!\n", b.name)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) setCode(c int) { b.mu.Lock(); b.code = c; b.mu.Unlock() }

func (b *backend) lastHit() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.hits) == 0 {
		return ""
	}
	return b.hits[len(b.hits)-1]
}

// addr is a backend's address as a routing.Backend.
func addr(t testing.TB, hostPort string) routing.Backend {
	h, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return routing.Backend{Host: h, Port: int32(n)}
}

// refusedAddr is a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// egressTable is the table of cluster-2 for httpbin/httpbin port 8080:
// its own endpoints local, and the exports of the remotes (cluster key to
// the loopback address of a stand-in for its gateway).
func egressTable(t testing.TB, local []string, remotes map[string]string, pol *v1alpha1.GlobalTrafficPolicySpec) *Table {
	targets := map[string]v1alpha1.Target{}
	for c, a := range remotes {
		b := addr(t, a)
		targets[c] = v1alpha1.Target{Host: b.Host, IP: b.Host, Port: b.Port, Path: "/" + c[strings.LastIndexByte(c, '/')+1:] + "/httpbin-mesh"}
	}
	var lb []routing.Backend
	for _, a := range local {
		lb = append(lb, addr(t, a))
	}
	imp := serviceImport("httpbin", "httpbin", targets)
	r := routing.Compute(routing.Input{Consumer: c2, Port: 8080, LocalBackends: lb, Import: imp, Policy: pol})
	return &Table{cluster: c2, egress: map[ServiceKey]*egressService{
		{"httpbin", "httpbin"}: {ports: map[int32]*routing.Route{8080: &r}, portList: []int32{8080}},
	}}
}

// newEgress serves g's egress on loopback and returns a client that uses
// it as its proxy.
func newEgress(t testing.TB, g *Gateway) *http.Client {
	srv := httptest.NewServer(g.Egress())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func testGateway() *Gateway {
	o := DefaultProxyOptions()
	o.Cluster = c2
	o.DialTimeout = time.Second
	return NewGateway(o)
}

// answer is what a request got: code, served-by and body.
type answer struct {
	code     int
	servedBy string
	body     string
}

func do(t *testing.T, c *http.Client, method, target, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get(ServedByHeader), string(b)}
}

// TestEgressFailOver: the walkthrough's FailOver, from cluster-2: its own
// endpoint serves; when it dies, the very next request is served by a
// target, at the target's path, and no request fails.
func TestEgressFailOver(t *testing.T) {
	local, r1, r3 := newBackend(t, "cluster-2"), newBackend(t, "cluster-1"), newBackend(t, "cluster-3")
	g := testGateway()
	g.SetTable(egressTable(t, []string{local.Listener.Addr().String()},
		map[string]string{c1: r1.Listener.Addr().String(), c3: r3.Listener.Addr().String()},
		&v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: c1}, {ClusterKey: c3}}}))
	c := newEgress(t, g)

	for range 5 {
		if a := do(t, c, "GET", "http://httpbin.httpbin:8080/get?x=1", ""); a.code != 200 || a.servedBy != c2 || a.body != "Hi, I am from cluster-2!\n" {
			t.Fatalf("with the local endpoint up: %+v, want 200 from %s", a, c2)
		}
	}
	if h := local.lastHit(); h != "httpbin.httpbin:8080 /get?x=1" {
		t.Errorf("the local endpoint got %q, want the request's own Host and path", h)
	}
	local.Close()
	served := map[string]int{}
	for range 20 {
		a := do(t, c, "GET", "http://httpbin.httpbin.svc.cluster.local:8080/get", "")
		if a.code != 200 || (a.servedBy != c1 && a.servedBy != c3) {
			t.Fatalf("after the local endpoint died: %+v, want 200 from a target", a)
		}
		served[a.servedBy]++
	}
	if served[c1] == 0 || served[c3] == 0 {
		t.Errorf("the targets served %v, want both to share the load", served)
	}
	for _, b := range []*backend{r1, r3} {
		if h := b.lastHit(); !strings.HasSuffix(h, "/"+b.name+"/httpbin-mesh/get") || !strings.HasPrefix(h, "127.0.0.1:") {
			t.Errorf("%s's gateway got %q, want its own address as Host and the export's path before the request's", b.name, h)
		}
	}
}

// TestEgressDoesNotReplayBodies: a request with a body whose backend
// refuses the connection fails (its body is read once, never kept); the
// backend is ejected, so the next request takes the next tier.
func TestEgressDoesNotReplayBodies(t *testing.T) {
	r1 := newBackend(t, "cluster-1")
	g := testGateway()
	g.SetTable(egressTable(t, []string{refusedAddr(t)}, map[string]string{c1: r1.Listener.Addr().String()},
		&v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: c1}}}))
	c := newEgress(t, g)
	if a := do(t, c, "POST", "http://httpbin.httpbin:8080/post", "payload"); a.code != http.StatusBadGateway || a.servedBy != "" {
		t.Fatalf("a POST to a refusing endpoint: %+v, want 502 and no Served-By", a)
	}
	if a := do(t, c, "POST", "http://httpbin.httpbin:8080/post", "payload"); a.code != 200 || a.servedBy != c1 {
		t.Fatalf("the next POST: %+v, want 200 from %s", a, c1)
	}
}

// TestEgress5xxEjects: a backend that answers 5xx gives that answer, and
// is left out of the next requests.
func TestEgress5xxEjects(t *testing.T) {
	local, r1 := newBackend(t, "cluster-2"), newBackend(t, "cluster-1")
	local.setCode(http.StatusInternalServerError)
	g := testGateway()
	g.SetTable(egressTable(t, []string{local.Listener.Addr().String()}, map[string]string{c1: r1.Listener.Addr().String()},
		&v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: c1}}}))
	c := newEgress(t, g)
	if a := do(t, c, "GET", "http://httpbin.httpbin:8080/", ""); a.code != 500 || a.servedBy != c2 {
		t.Fatalf("first request: %+v, want the local 500", a)
	}
	if a := do(t, c, "GET", "http://httpbin.httpbin:8080/", ""); a.code != 200 || a.servedBy != c1 {
		t.Fatalf("second request: %+v, want 200 from %s", a, c1)
	}
}

// TestEgressAllEjected: when every backend is ejected the gateway still
// tries them rather than refusing.
func TestEgressAllEjected(t *testing.T) {
	local := newBackend(t, "cluster-2")
	g := testGateway()
	g.SetTable(egressTable(t, []string{local.Listener.Addr().String()}, nil, nil))
	c := newEgress(t, g)
	local.setCode(http.StatusServiceUnavailable)
	do(t, c, "GET", "http://httpbin.httpbin:8080/", "")
	local.setCode(http.StatusOK)
	if a := do(t, c, "GET", "http://httpbin.httpbin:8080/", ""); a.code != 200 || a.servedBy != c2 {
		t.Fatalf("with its only endpoint ejected: %+v, want it tried anyway", a)
	}
}

// TestEgressRefusals: what the egress does not proxy, and the 503 that
// explains a missing route.
func TestEgressRefusals(t *testing.T) {
	r1 := newBackend(t, "cluster-1")
	g := testGateway()
	c := newEgress(t, g)
	if a := do(t, c, "GET", "http://httpbin.httpbin:8080/", ""); a.code != 503 || !strings.Contains(a.body, "not read") {
		t.Errorf("before the first table: %+v, want 503", a)
	}
	// Locality (no policy), nothing local: the walkthrough's first step.
	g.SetTable(egressTable(t, nil, map[string]string{c1: r1.Listener.Addr().String()}, nil))
	a := do(t, c, "GET", "http://httpbin.httpbin:8080/", "")
	if a.code != 503 || a.servedBy != "" || !strings.Contains(a.body, "policy: Locality") || !strings.Contains(a.body, "NoLocalEndpoints") ||
		!strings.Contains(a.body, c1+": out, NotATarget") {
		t.Errorf("Locality without local endpoints: %+v, want 503 explaining every cluster", a)
	}
	for _, tc := range []struct {
		target string
		code   int
		says   string
	}{
		{"http://example.com/", 404, "service com/example is not federated"},
		{"http://a.b.c/", 404, "not a federated service"},
		{"http://127.0.0.1:" + strconv.Itoa(int(addr(t, r1.Listener.Addr().String()).Port)) + "/", 404, "not a federated service"},
		{"http://other.httpbin:8080/", 404, "is not federated"},
		{"http://httpbin.httpbin:9090/", 404, "has no port 9090 in " + c2 + " (ports: 8080)"},
	} {
		if a := do(t, c, "GET", tc.target, ""); a.code != tc.code || !strings.Contains(a.body, tc.says) {
			t.Errorf("GET %s: %+v, want %d saying %q", tc.target, a, tc.code, tc.says)
		}
	}
	if h := r1.lastHit(); h != "" {
		t.Errorf("a refused request reached a backend: %q", h)
	}

	// CONNECT, by hand: clients tunnel https:// through it.
	srv := httptest.NewServer(g.Egress())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", r1.Listener.Addr(), r1.Listener.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("CONNECT: %d, want 405", resp.StatusCode)
	}
}

// TestEgressStreams: a response is passed on as the backend writes it,
// not once it is complete.
func TestEgressStreams(t *testing.T) {
	release := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		fmt.Fprintln(w, "first")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprintln(w, "second")
	}))
	defer stream.Close()
	defer close(release)
	g := testGateway()
	g.SetTable(egressTable(t, []string{stream.Listener.Addr().String()}, nil, nil))
	c := newEgress(t, g)
	resp, err := c.Get("http://httpbin.httpbin:8080/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line: %q, %v; want it before the backend finishes", line, err)
	}
}

// TestIngress: the ingress listener serves an export's path at its
// Service's endpoints, with the export's rewrite, and names its cluster.
func TestIngress(t *testing.T) {
	be := newBackend(t, "cluster-1")
	ing := ingress("fedmesh-httpbin", time.Unix(1, 0), "pipy", path("/cluster-1/httpbin-mesh", networkingv1.PathTypePrefix, "httpbin"))
	ing.Annotations = map[string]string{syncer.AnnotationRewriteFrom: "/cluster-1/httpbin-mesh", syncer.AnnotationRewriteTo: "/"}
	gone := ingress("fedmesh-gone", time.Unix(1, 0), "pipy", path("/gone", networkingv1.PathTypePrefix, "gone"))
	empty := ingress("fedmesh-empty", time.Unix(1, 0), "pipy", path("/empty", networkingv1.PathTypePrefix, "empty"))
	tb := Build(BuildOptions{Cluster: c1, IngressClass: "pipy"}, Objects{
		Services:       []*corev1.Service{service("httpbin", "httpbin", 8080), service("httpbin", "empty", 8080)},
		EndpointSlices: []*discoveryv1.EndpointSlice{endpointSlice("httpbin", "httpbin", 8080, "10.0.1.5")},
		Ingresses:      []*networkingv1.Ingress{ing, gone, empty},
	})
	// Endpoints on loopback, which EndpointSlices refuse, stand in for
	// the Service's.
	r := routing.Compute(routing.Input{Consumer: c1, Port: 8080, LocalBackends: []routing.Backend{addr(t, be.Listener.Addr().String())}})
	tb.prefix[hostPath{"", "/cluster-1/httpbin-mesh"}].route = &r
	o := DefaultProxyOptions()
	o.Cluster = c1
	g := NewGateway(o)
	g.SetTable(tb)
	srv := httptest.NewServer(g.Ingress())
	defer srv.Close()
	c := srv.Client()

	if a := do(t, c, "GET", srv.URL+"/cluster-1/httpbin-mesh/get?a=b", ""); a.code != 200 || a.servedBy != c1 || a.body != "Hi, I am from cluster-1!\n" {
		t.Fatalf("the export's path: %+v", a)
	}
	if h := be.lastHit(); !strings.HasSuffix(h, " /get?a=b") {
		t.Errorf("the Service got %q, want the rewritten path /get?a=b", h)
	}
	for _, tc := range []struct {
		path string
		code int
		says string
	}{
		{"/cluster-1/httpbin-meshx", 404, "no Ingress"},
		{"/gone/x", 503, "Service httpbin/gone does not exist"},
		{"/empty", 503, "NoLocalEndpoints"},
	} {
		if a := do(t, c, "GET", srv.URL+tc.path, ""); a.code != tc.code || !strings.Contains(a.body, tc.says) || a.servedBy != "" {
			t.Errorf("%s: %+v, want %d saying %q", tc.path, a, tc.code, tc.says)
		}
	}
}

// TestHealth: ejections grow while a backend keeps failing, a success
// forgets them, and failures while ejected count once.
func TestHealth(t *testing.T) {
	now := time.Unix(1000, 0)
	ejections := 0
	h := newHealth(time.Second, 5*time.Second, func(string) { ejections++ })
	h.now = func() time.Time { return now }
	b := routing.Backend{Host: "10.0.0.1", Port: 80}
	if !h.usable(c1, b) {
		t.Fatal("a backend never seen is not usable")
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if d := h.failed(c1, b); d != want {
			t.Errorf("failure %d: ejected for %s, want %s", i+1, d, want)
		}
		if d := h.failed(c1, b); d != 0 {
			t.Errorf("failure %d again while ejected: ejected for %s, want it to count once", i+1, d)
		}
		if h.usable(c1, b) {
			t.Errorf("failure %d: usable while ejected", i+1)
		}
		now = now.Add(want)
		if !h.usable(c1, b) {
			t.Errorf("failure %d: not usable once its time is served", i+1)
		}
	}
	if ejections != 5 {
		t.Errorf("%d ejections reported, want 5", ejections)
	}
	h.succeeded(c1, b)
	if d := h.failed(c1, b); d != time.Second {
		t.Errorf("after a success, ejected for %s, want the base again", d)
	}
	now = now.Add(time.Hour)
	h.forget()
	if h.entries.Load() != 0 {
		t.Errorf("%d entries kept long after they were served", h.entries.Load())
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain\nlines\n", 100, "plain\nlines\n"},
		{"bell\a esc\x1b[31m", 100, `bell\a esc\x1b[31m`},
		{"bad \xff byte", 100, `bad \ufffd byte`},
		{strings.Repeat("é", 100), 11, "ééé…\n"},
	} {
		if got := sanitize(tc.in, tc.max); got != tc.want || len(got) > tc.max {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
