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

// Package walkthrough replays the Flomesh multi-cluster walkthrough
// against a running federation, through its members' fedmesh-gateways:
// the manifests of artifacts/examples applied unchanged (but for the
// ${...} the walkthrough substitutes) with kubectl, and, after each step,
// the curl of a client in cluster-2 through its gateway's egress proxy,
// compared with the walkthrough's result.
//
// hack/demo (make demo) prints it against make local-up's federation; the
// integration test asserts it on a federation of its own. Both deploy
// httpbin with DeployHTTPBin: the manifest, and, since no Pod runs without
// a kubelet, a backend in a network namespace (test/framework/netns) that
// an EndpointSlice of each of its Services names. It needs root for that.
// It imports no testing package.
package walkthrough

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fedmesh/fedmesh/pkg/routing"
	"github.com/fedmesh/fedmesh/test/framework/netns"
)

const (
	// Namespace and Service are the walkthrough's service, httpbin/httpbin.
	Namespace = "httpbin"
	Service   = "httpbin"
	// Port is its port, and its backends' port.
	Port = 8080
	// URL is what the walkthrough's client requests.
	URL = "http://httpbin.httpbin:8080/"
	// Client is the member the walkthrough's client runs in.
	Client = "cluster-2"
	// ServedByHeader names the cluster that served a response.
	ServedByHeader = "Fedmesh-Served-By"
)

// Key is the cluster key of a member of the walkthrough, which takes every
// default.
func Key(member string) string { return "default/default/default/" + member }

// Env is a running federation the walkthrough is replayed against.
type Env struct {
	// Root is the repository's root, where artifacts/examples is.
	Root string
	// Kubectl is the path of kubectl; the directory of kubectl-fedmesh
	// need not be on the PATH.
	Kubectl string
	// ControlPlane is an admin kubeconfig of the control plane.
	ControlPlane string
	// Members are admin kubeconfigs of the members, by name.
	Members map[string]string
	// Egress is the address of each member's gateway's egress proxy.
	Egress map[string]string
	// Show, when set, shortens a path for printing (relative to the
	// repository); Log, when set, gets each command run and its output.
	Show func(path string) string
	Log  func(format string, args ...any)

	backends map[string]*netns.Backend
}

func (e *Env) show(path string) string {
	if e.Show != nil {
		return e.Show(path)
	}
	return path
}

func (e *Env) log(format string, args ...any) {
	if e.Log != nil {
		e.Log(format, args...)
	}
}

// Backend is httpbin's backend in member, once DeployHTTPBin made one.
func (e *Env) Backend(member string) *netns.Backend { return e.backends[member] }

// Close stops the backends DeployHTTPBin started and removes their
// namespaces; what it wrote into the members stays (RemoveHTTPBin).
func (e *Env) Close() error {
	var errs []error
	for _, b := range e.backends {
		errs = append(errs, b.Close())
	}
	e.backends = nil
	return errors.Join(errs...)
}

// Manifest is a file of artifacts/examples with ${CLUSTER_NAME} replaced,
// as the walkthrough's commands do.
func (e *Env) Manifest(file, member string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(e.Root, "artifacts", "examples", file))
	if err != nil {
		return nil, err
	}
	return bytes.ReplaceAll(b, []byte("${CLUSTER_NAME}"), []byte(member)), nil
}

// Apply runs kubectl apply of an example file on the control plane
// (member "") or a member, into namespace (none: the file's own), and
// logs the command as the walkthrough would type it.
func (e *Env) Apply(ctx context.Context, member, namespace, file string) error {
	manifest, err := e.Manifest(file, member)
	if err != nil {
		return err
	}
	kubeconfig := e.ControlPlane
	if member != "" {
		kubeconfig = e.Members[member]
	}
	args := []string{"--kubeconfig=" + kubeconfig, "apply"}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	args = append(args, "-f", "-")
	shown := fmt.Sprintf("kubectl --kubeconfig %s apply", e.show(kubeconfig))
	if namespace != "" {
		shown += " -n " + namespace
	}
	src := e.show(filepath.Join(e.Root, "artifacts", "examples", file))
	if member != "" && bytes.Contains(mustRead(filepath.Join(e.Root, "artifacts", "examples", file)), []byte("${CLUSTER_NAME}")) {
		e.log("$ sed 's/${CLUSTER_NAME}/%s/g' %s | %s -f -", member, src, shown)
	} else {
		e.log("$ %s -f %s", shown, src)
	}
	return e.kubectl(ctx, manifest, args...)
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func (e *Env) kubectl(ctx context.Context, stdin []byte, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Kubectl, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			e.log("%s", line)
		}
	}
	if err != nil {
		return fmt.Errorf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return nil
}

func (e *Env) config(member string) (*rest.Config, error) {
	kubeconfig := e.ControlPlane
	if member != "" {
		kubeconfig = e.Members[member]
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func (e *Env) kube(member string) (kubernetes.Interface, error) {
	cfg, err := e.config(member)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// DeployHTTPBin deploys the walkthrough's httpbin in member: the
// namespace, the manifest httpbin.yaml (a Deployment whose Pods stay
// Pending, and the Services httpbin and httpbin-<member>), and a backend
// in a network namespace of its own that answers as the manifest's pipy
// script does, published by an EndpointSlice of each Service. It needs
// root; the error then wraps netns.ErrNeedRoot.
func (e *Env) DeployHTTPBin(ctx context.Context, member string) (*netns.Backend, error) {
	if err := netns.Available(); err != nil {
		return nil, err
	}
	kube, err := e.kube(member)
	if err != nil {
		return nil, err
	}
	if err := e.CreateNamespace(ctx, member); err != nil {
		return nil, err
	}
	if err := e.Apply(ctx, member, Namespace, "httpbin.yaml"); err != nil {
		return nil, err
	}
	b := e.backends[member]
	if b == nil {
		if b, err = netns.StartBackend(ctx, netns.BackendOptions{Port: Port, Message: netns.Message(member)}); err != nil {
			return nil, err
		}
		if e.backends == nil {
			e.backends = map[string]*netns.Backend{}
		}
		e.backends[member] = b
	}
	for _, svc := range []string{Service, Service + "-" + member} {
		if err := netns.Publish(ctx, kube, Namespace, svc, Port, b.Addr()); err != nil {
			return nil, err
		}
	}
	e.log("# no kubelet runs its Pod: httpbin of %s answers at %s, in network namespace %s, which an EndpointSlice of each of its Services names", member, b.Addr(), b.Namespace().Name)
	return b, nil
}

// RemoveHTTPBin deletes what DeployHTTPBin wrote into member and stops its
// backend.
func (e *Env) RemoveHTTPBin(ctx context.Context, member string) error {
	kube, err := e.kube(member)
	if err != nil {
		return err
	}
	var errs []error
	ignore := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	for _, svc := range []string{Service, Service + "-" + member} {
		ignore(netns.Unpublish(ctx, kube, Namespace, svc))
		ignore(kube.CoreV1().Services(Namespace).Delete(ctx, svc, metav1.DeleteOptions{}))
	}
	ignore(kube.AppsV1().Deployments(Namespace).Delete(ctx, "httpbin", metav1.DeleteOptions{}))
	if b := e.backends[member]; b != nil {
		errs = append(errs, b.Close())
		delete(e.backends, member)
	}
	return errors.Join(errs...)
}

// CreateNamespace makes the namespace httpbin on the control plane
// (member "") or a member, unless it exists (fedmesh-syncer makes it in a
// member it imports into).
func (e *Env) CreateNamespace(ctx context.Context, member string) error {
	kube, err := e.kube(member)
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return err
	}
	kubeconfig := e.ControlPlane
	if member != "" {
		kubeconfig = e.Members[member]
	}
	e.log("$ kubectl --kubeconfig %s create namespace %s", e.show(kubeconfig), Namespace)
	e.log("namespace/%s created", Namespace)
	return nil
}

// Published returns the addresses of httpbin's backends that the
// EndpointSlice of DeployHTTPBin names in member, and an error when there
// is none.
func (e *Env) Published(ctx context.Context, member string) ([]string, error) {
	kube, err := e.kube(member)
	if err != nil {
		return nil, err
	}
	s, err := kube.DiscoveryV1().EndpointSlices(Namespace).Get(ctx, netns.SliceName(Service), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ep := range s.Endpoints {
		for _, a := range ep.Addresses {
			for _, p := range s.Ports {
				if p.Port != nil {
					out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the EndpointSlice %s/%s of %s names no backend", Namespace, s.Name, member)
	}
	return out, nil
}

var serviceImports = schema.GroupVersionResource{Group: "flomesh.io", Version: "v1alpha1", Resource: "serviceimports"}

// WaitForImport waits until member holds the ServiceImport httpbin with an
// endpoint of every cluster of from, as fedmesh-syncer writes it.
func (e *Env) WaitForImport(ctx context.Context, member string, from []string, timeout time.Duration) error {
	cfg, err := e.config(member)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		u, err := dyn.Resource(serviceImports).Namespace(Namespace).Get(ctx, Service, metav1.GetOptions{})
		if err == nil {
			keys := importedFrom(u)
			missing := false
			for _, m := range from {
				missing = missing || !slices.Contains(keys, Key(m))
			}
			if !missing {
				return nil
			}
			last = fmt.Sprintf("it imports from %v", keys)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not import %s/%s from %v after %s: %s", member, Namespace, Service, from, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func importedFrom(u *unstructured.Unstructured) []string {
	var keys []string
	ports, _, _ := unstructured.NestedSlice(u.Object, "spec", "ports")
	for _, p := range ports {
		p, _ := p.(map[string]any)
		eps, _, _ := unstructured.NestedSlice(p, "endpoints")
		for _, ep := range eps {
			ep, _ := ep.(map[string]any)
			if k, ok := ep["clusterKey"].(string); ok && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// DeletePolicy deletes the GlobalTrafficPolicy httpbin/httpbin from the
// control plane, if there is one.
func (e *Env) DeletePolicy(ctx context.Context) error {
	cfg, err := e.config("")
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "flomesh.io", Version: "v1alpha1", Resource: "globaltrafficpolicies"}
	err = dyn.Resource(gvr).Namespace(Namespace).Delete(ctx, Service, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Result is the outcome of one request.
type Result struct {
	// Status is the HTTP status, 0 when the request failed.
	Status int
	// Body is the response's body, at most 16 KiB of it.
	Body string
	// ServedBy is the Fedmesh-Served-By header.
	ServedBy string
	Err      error
}

// Member is the member whose httpbin answered, from the body, or "".
func (r Result) Member() string {
	if r.Status != http.StatusOK {
		return ""
	}
	rest, ok := strings.CutPrefix(r.Body, "Hi, I am from ")
	if !ok {
		return ""
	}
	m, _, ok := strings.Cut(rest, " and controlled by mesh!")
	if !ok {
		return ""
	}
	return m
}

// String is the result as curl shows it: the body of a success, the
// status and first line of a refusal.
func (r Result) String() string {
	switch {
	case r.Err != nil:
		return "error: " + r.Err.Error()
	case r.Status == http.StatusOK:
		return strings.TrimRight(r.Body, "\n")
	}
	first, _, _ := strings.Cut(r.Body, "\n")
	return fmt.Sprintf("%d %s: %s", r.Status, http.StatusText(r.Status), first)
}

// Curl sends one request for u through the HTTP proxy at egress, on a new
// connection, as curl -x http://EGRESS u does.
func Curl(ctx context.Context, egress, u string) Result {
	proxy := &url.URL{Scheme: "http", Host: egress}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	return Result{Status: resp.StatusCode, Body: string(body), ServedBy: resp.Header.Get(ServedByHeader), Err: err}
}

// Expectation is the walkthrough's result of a step.
type Expectation struct {
	// Serving are the members whose httpbin answers, every one of them
	// within a round; none means every request fails.
	Serving []string
	// Out are the exporting members the 503's explanation must name as
	// out of the route, not targets of the policy, when Serving is empty.
	Out []string
}

// Met tells whether a round of results is the expected one, and if not,
// why.
func (x Expectation) Met(rs []Result) (bool, string) {
	if len(x.Serving) == 0 {
		for _, r := range rs {
			if r.Status != http.StatusServiceUnavailable {
				return false, "got " + r.String()
			}
			for _, m := range x.Out {
				if want := "  " + Key(m) + ": out, " + string(routing.NotATarget); !strings.Contains(r.Body, want) {
					return false, fmt.Sprintf("the 503 does not say that %s is out, %s", m, routing.NotATarget)
				}
			}
		}
		return true, ""
	}
	seen := map[string]bool{}
	for _, r := range rs {
		m := r.Member()
		if m == "" || !slices.Contains(x.Serving, m) {
			return false, "got " + r.String()
		}
		if r.ServedBy != Key(m) {
			return false, fmt.Sprintf("%s answered, but %s says %q", m, ServedByHeader, r.ServedBy)
		}
		seen[m] = true
	}
	for _, m := range x.Serving {
		if !seen[m] {
			return false, m + " did not serve"
		}
	}
	return true, ""
}

// Round is what one Await saw.
type Round struct {
	Results []Result
	// Rounds is how many rounds were sent, Elapsed how long since the
	// first.
	Rounds  int
	Elapsed time.Duration
	// OK is whether the last round met the expectation; Why says why not.
	OK  bool
	Why string
}

// Await sends rounds of n requests from the client member until a round
// meets x, or timeout passes, and returns the last round. A change of the
// federation takes a moment to reach the gateways, and a round of an
// ActiveActive route may miss a cluster by chance, so one round that does
// not meet x is no failure.
func (e *Env) Await(ctx context.Context, x Expectation, n int, timeout time.Duration) Round {
	start := time.Now()
	var r Round
	for {
		r.Results = r.Results[:0]
		for range n {
			r.Results = append(r.Results, Curl(ctx, e.Egress[Client], URL))
		}
		r.Rounds++
		r.Elapsed = time.Since(start)
		if r.OK, r.Why = x.Met(r.Results); r.OK || r.Elapsed > timeout || ctx.Err() != nil {
			return r
		}
		select {
		case <-ctx.Done():
			return r
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Step is one step of the walkthrough.
type Step struct {
	Title string
	// Do makes the step's change, as the walkthrough's commands do.
	Do func(ctx context.Context, e *Env) error
	// Walkthrough is the walkthrough's curl result, one line per
	// request that differs.
	Walkthrough []string
	Expect      Expectation
}

// Steps are the walkthrough's, from a federation where httpbin runs in
// cluster-1 and cluster-3 (DeployHTTPBin) and nothing is exported.
func Steps() []Step {
	hi := netns.Message
	line := func(m string) string { return strings.TrimRight(hi(m), "\n") }
	return []Step{
		{
			Title: "export httpbin from cluster-1 and cluster-3; no policy (Locality)",
			Do: func(ctx context.Context, e *Env) error {
				for _, m := range []string{"cluster-1", "cluster-3"} {
					if err := e.Apply(ctx, m, "", "serviceexport-httpbin.yaml"); err != nil {
						return err
					}
				}
				return e.WaitForImport(ctx, Client, []string{"cluster-1", "cluster-3"}, time.Minute)
			},
			Walkthrough: []string{"the request fails: cluster-2 has no httpbin"},
			Expect:      Expectation{Out: []string{"cluster-1", "cluster-3"}},
		},
		{
			Title: "FailOver to cluster-1 and cluster-3",
			Do: func(ctx context.Context, e *Env) error {
				if err := e.CreateNamespace(ctx, ""); err != nil {
					return err
				}
				return e.Apply(ctx, "", Namespace, "gtp-failover.yaml")
			},
			Walkthrough: []string{line("cluster-1"), line("cluster-3")},
			Expect:      Expectation{Serving: []string{"cluster-1", "cluster-3"}},
		},
		{
			Title: "deploy httpbin in cluster-2 too",
			Do: func(ctx context.Context, e *Env) error {
				_, err := e.DeployHTTPBin(ctx, Client)
				return err
			},
			Walkthrough: []string{line("cluster-2")},
			Expect:      Expectation{Serving: []string{"cluster-2"}},
		},
		{
			Title: "ActiveActive with cluster-1 and cluster-3",
			Do: func(ctx context.Context, e *Env) error {
				return e.Apply(ctx, "", Namespace, "gtp-activeactive.yaml")
			},
			Walkthrough: []string{line("cluster-1"), line("cluster-2"), line("cluster-3")},
			Expect:      Expectation{Serving: []string{"cluster-1", "cluster-2", "cluster-3"}},
		},
	}
}

// Reset undoes the steps, so that they can be replayed: the policy goes,
// and so does httpbin of cluster-2. The exports stay; Steps applies them
// again, unchanged.
func (e *Env) Reset(ctx context.Context) error {
	return errors.Join(e.DeletePolicy(ctx), e.RemoveHTTPBin(ctx, Client))
}
