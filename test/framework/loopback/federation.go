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
// Package loopback runs real federations on 127.0.0.1, without containers:
// one etcd, a control-plane kube-apiserver with its aggregator, member
// kube-apiservers, a kube-controller-manager beside each kube-apiserver,
// fedmesh-apiserver registered through the project's own APIService and
// RBAC manifests (artifacts/deploy) and running as its ServiceAccount, and
// fedmesh-syncer as its own. Callers say what they need ("a control plane
// and 3 members") and get kubeconfigs and typed clients for each cluster.
//
// It is the one place where those servers, their flags and their
// certificates are defined: test/framework wraps it for tests, and
// hack/local-up runs the development federation of make local-up on it.
// It imports no testing package, as envtest does not.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/fedmesh/fedmesh/pkg/membercrds"
	"github.com/fedmesh/fedmesh/test/framework/pki"
)

// Options say what a federation is made of, and how it runs.
type Options struct {
	// Members are the names of the member clusters to start.
	Members []string
	// WithoutFedmesh starts the clusters only.
	WithoutFedmesh bool
	// FedmeshArgs are extra flags for fedmesh-apiserver.
	FedmeshArgs []string
	// WithSyncer also runs fedmesh-syncer, after fedmesh-apiserver, as
	// its ServiceAccount.
	WithSyncer bool
	// WithoutMemberCRDs leaves the members without fedmesh's CRDs, for
	// callers that install them as "kubectl fedmesh join" does.
	WithoutMemberCRDs bool
	// FedmeshReplicas is the number of fedmesh-apiserver processes (1
	// when unset). They share etcd. With more than one, each listens on
	// a port of its own and the APIService points at the federation's
	// Balancer, which forwards each connection to the next replica, as
	// the Service in front of a Deployment's pods would.
	FedmeshReplicas int
	// SyncerReplicas is the number of fedmesh-syncer processes (1 when
	// unset); they elect a leader through their Lease.
	SyncerReplicas int
	// SyncerArgs are extra flags for fedmesh-syncer; they override the
	// flags of artifacts/deploy that the federation passes (tests pass
	// short leases and retry delays here).
	SyncerArgs []string
	// WithoutControllerManagers runs no kube-controller-manager: namespaces
	// then never finish deleting, no default ServiceAccount appears and the
	// aggregated ClusterRoles (view, edit, admin) stay empty. For the bench,
	// whose figures are fedmesh's own and would otherwise share the CPU
	// with the members' controllers (an EndpointSlice for every Service).
	WithoutControllerManagers bool

	// FedmeshBinDir is the directory of fedmesh's own commands
	// (fedmesh-apiserver, fedmesh-syncer). Required unless WithoutFedmesh.
	FedmeshBinDir string
	// Dir is where the federation writes its certificates (pki/), etcd's
	// data (etcd/), the servers' logs (logs/) and the kubeconfigs; it must
	// be empty, and is kept by Stop. When empty, a temporary directory is
	// used and Stop removes it.
	Dir string
	// Ports fix the ports the servers listen on; a zero port is picked
	// free, and a server that loses it to another process meanwhile gets
	// another.
	Ports Ports
	// Restart starts a server that exits by itself again, after a back-off
	// that grows while it keeps exiting, as a Deployment's pod is
	// restarted; each restart is reported to Log. Without it a dead
	// server stays down, as tests that kill one expect.
	Restart bool
	// ReadyTimeout bounds each wait for a server to become ready (90s
	// when unset).
	ReadyTimeout time.Duration
	// Log, when set, receives a line for each step, for each wait that
	// takes long, and for each restart.
	Log func(format string, args ...any)
}

// Ports are the loopback ports of a federation's servers.
type Ports struct {
	Etcd, EtcdPeer int
	ControlPlane   int
	// Members are the members' kube-apiservers' ports, by member name.
	Members map[string]int
	// Fedmesh is the port of fedmesh-apiserver, or of the balancer in
	// front of its replicas (the others get free ones).
	Fedmesh int
	// Syncer is the HTTPS port of the first fedmesh-syncer replica; the
	// others get free ones.
	Syncer int
}

const defaultReadyTimeout = 90 * time.Second

// maxStarting is how many member clusters start at once.
const maxStarting = 8

// Federation is a running set of clusters.
type Federation struct {
	ControlPlane *Cluster
	Members      []*Cluster

	opts Options
	dir  string
	// removeDir is set when dir is the federation's own temporary one.
	removeDir bool
	certs     certs
	etcd      *process
	etcdURL   string

	fedmesh     *process
	fedmeshPort int
	syncers     []*Syncer
	// fedmeshServers are the fedmesh-apiserver replicas, the first of
	// them fedmesh; balancer stands in front of them when there are
	// several.
	fedmeshServers []*FedmeshServer
	balancer       *Balancer
	// gateways are the members' fedmesh-gateways, as StartGateway
	// started them.
	gateways []*Gateway

	mu    sync.Mutex
	procs []*process
}

// certs are the files of the federation's PKI.
type certs struct {
	ca                      *pki.CA
	caFile                  string
	servingCert, servingKey string
	adminCert, adminKey     string
	proxyCert, proxyKey     string
	serviceAccountKey       string
}

// New starts a federation. The caller must Stop it, also when New fails and
// returns a partial one.
func New(ctx context.Context, opts Options) (*Federation, error) {
	f := &Federation{opts: opts, dir: opts.Dir}
	if f.dir == "" {
		dir, err := os.MkdirTemp("", "fedmesh-federation-")
		if err != nil {
			return nil, err
		}
		f.dir, f.removeDir = dir, true
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "logs"), 0o700); err != nil {
		return f, err
	}
	c, err := writeCertificates(filepath.Join(f.dir, "pki"))
	if err != nil {
		return f, fmt.Errorf("certificates: %w", err)
	}
	f.certs = c
	f.say("wrote the certificates in %s", filepath.Join(f.dir, "pki"))
	if err := f.startEtcd(ctx); err != nil {
		return f, fmt.Errorf("etcd: %w", err)
	}

	f.ControlPlane = &Cluster{Name: "control-plane", f: f, port: opts.Ports.ControlPlane, extra: []string{
		// The aggregator proxies to fedmesh-apiserver with the
		// front-proxy client certificate and passes the user in the
		// X-Remote-* headers; fedmesh-apiserver trusts those from the
		// requestheader CA with the allowed name, which it reads from
		// kube-system/extension-apiserver-authentication. Without these
		// the aggregator gets 401/403. --enable-aggregator-routing stays
		// off: the aggregator then dials the ExternalName Service's name.
		"--requestheader-client-ca-file=" + f.certs.caFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + f.certs.proxyCert,
		"--proxy-client-key-file=" + f.certs.proxyKey,
	}}
	for _, name := range opts.Members {
		f.Members = append(f.Members, &Cluster{Name: name, f: f, port: opts.Ports.Members[name]})
	}
	// Each kube-apiserver takes seconds to become ready, mostly waiting,
	// so the clusters start in parallel, and fedmesh-apiserver, which
	// needs only the control plane's kube-apiserver, starts beside its
	// kube-controller-manager while the members start.
	errs := make([]error, 2+len(f.Members))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if errs[0] = f.ControlPlane.startAPIServer(ctx); errs[0] != nil {
			return
		}
		var cp sync.WaitGroup
		if !opts.WithoutControllerManagers {
			cp.Add(1)
			go func() {
				defer cp.Done()
				errs[1] = f.ControlPlane.startControllerManager(ctx)
			}()
		}
		if !opts.WithoutFedmesh {
			if err := f.startFedmesh(ctx, opts.FedmeshArgs); err != nil {
				errs[0] = fmt.Errorf("fedmesh-apiserver: %w", err)
			}
		}
		cp.Wait()
	}()
	// Starting costs a kube-apiserver seconds of CPU too: more members than
	// maxStarting at once share the cores so thinly that none is ready
	// within its timeout (34 at once on 2 cores were not, after 90s).
	starting := make(chan struct{}, maxStarting)
	for i, m := range f.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			starting <- struct{}{}
			errs[2+i] = m.Start(ctx)
			<-starting
			if errs[2+i] != nil || opts.WithoutMemberCRDs {
				return
			}
			// As "kubectl fedmesh join" does, the member's administrator
			// installs the CRDs: fedmesh's identity may only upgrade them.
			if err := m.installMemberCRDs(ctx); err != nil {
				errs[2+i] = fmt.Errorf("member CRDs: %w", err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	if opts.WithoutFedmesh || !opts.WithSyncer {
		return f, nil
	}
	if err := f.startSyncers(ctx, max(opts.SyncerReplicas, 1), opts.SyncerArgs); err != nil {
		return f, fmt.Errorf("fedmesh-syncer: %w", err)
	}
	return f, nil
}

// InstallMemberCRDs installs the member CRDs into every member, as New does
// unless WithoutMemberCRDs: for a caller that starts its syncer late.
func (f *Federation) InstallMemberCRDs(ctx context.Context) error {
	errs := make([]error, len(f.Members))
	var wg sync.WaitGroup
	for i, m := range f.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.installMemberCRDs(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// installMemberCRDs installs the member CRDs (pkg/membercrds) into the
// member as its admin, and waits until it serves them: membercrds.Install
// waits for every CRD to be Established, and this for discovery to list
// its resource, so that a kubectl started right after finds it.
func (m *Cluster) installMemberCRDs(ctx context.Context) error {
	crds, err := membercrds.Load()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(m.Config())
	if err != nil {
		return err
	}
	if err := membercrds.Install(ctx, dyn, FieldManager, crds, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	for _, crd := range crds {
		if err := m.f.waitFor(ctx, m.proc, "the CRD "+crd.Object.GetName()+" in "+m.Name, func(ctx context.Context) error {
			return m.discovered(ctx, dyn, crd.Object)
		}); err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	m.f.say("installed the member CRDs in %s", m.Name)
	return nil
}

// discovered succeeds when discovery lists crd in every version it serves.
func (m *Cluster) discovered(ctx context.Context, dyn dynamic.Interface, crd *unstructured.Unstructured) error {
	u, err := dyn.Resource(membercrds.GVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(u.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	dc, err := discovery.NewDiscoveryClientForConfig(m.Config())
	if err != nil {
		return err
	}
	for _, v := range versions {
		v, _ := v.(map[string]interface{})
		if v["served"] != true {
			continue
		}
		gv := fmt.Sprintf("%s/%v", group, v["name"])
		list, err := dc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return err
		}
		found := false
		for _, r := range list.APIResources {
			found = found || r.Name == plural
		}
		if !found {
			return fmt.Errorf("discovery of %s does not list %s yet", gv, plural)
		}
	}
	return nil
}

// Member returns the member of that name.
func (f *Federation) Member(name string) *Cluster {
	for _, m := range f.Members {
		if m.Name == name {
			return m
		}
	}
	panic(fmt.Sprintf("no member %q", name))
}

// Dir is the federation's directory.
func (f *Federation) Dir() string { return f.dir }

// LogDir is the directory of the servers' logs, one <server>.log each.
func (f *Federation) LogDir() string { return filepath.Join(f.dir, "logs") }

// Stop stops every process and, if the federation made its directory,
// removes it. Nothing is restarted once Stop has begun.
func (f *Federation) Stop() {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	for _, p := range procs {
		p.halt()
	}
	if f.balancer != nil {
		f.balancer.Close()
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	if f.removeDir {
		os.RemoveAll(f.dir)
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// KeepLogs copies the logs of every process to _output/test-logs/<name>.
func (f *Federation) KeepLogs(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(root, "_output", "test-logs", unsafeName.ReplaceAllString(name, "_"))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	return dst, copyDir(f.LogDir(), dst)
}

// newProcess makes a server of the federation, logging to logs/<name>.log,
// supervised as Options.Restart says and stopped by Stop.
func (f *Federation) newProcess(name, binary string, gentle bool, args ...string) *process {
	p := &process{
		name: name, binary: binary, args: args, gentle: gentle,
		logPath: filepath.Join(f.LogDir(), name+".log"),
		restart: f.opts.Restart, say: f.say,
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = append(f.procs, p)
	return p
}

func (f *Federation) say(format string, args ...any) {
	if f.opts.Log != nil {
		f.opts.Log(format, args...)
	}
}

// WriteCertificates writes the certificates of a federation into dir, as
// New does into its pki/: ca.crt and ca.key; serving.crt and .key, for
// every server (localhost, 127.0.0.1, and the name the aggregator verifies
// fedmesh-apiserver as); the client certificates admin.crt and .key
// (O=system:masters) and front-proxy.crt and .key (CN=front-proxy-client);
// and sa.key, which signs and verifies service-account tokens.
func WriteCertificates(dir string) error {
	_, err := writeCertificates(dir)
	return err
}

func writeCertificates(dir string) (certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return certs{}, err
	}
	ca, err := pki.NewCA("fedmesh-loopback-ca")
	if err != nil {
		return certs{}, err
	}
	c := certs{ca: ca}
	if c.caFile, err = ca.WriteCert(dir, "ca"); err != nil {
		return certs{}, err
	}
	if _, err = ca.WriteKey(dir, "ca"); err != nil {
		return certs{}, err
	}
	write := func(kp *pki.KeyPair, err error, name string) (string, string, error) {
		if err != nil {
			return "", "", err
		}
		return kp.WriteFiles(dir, name)
	}
	// One serving certificate for every server. The aggregator verifies
	// fedmesh-apiserver's as <service>.<namespace>.svc.
	serving, err := ca.Serving([]string{"localhost", fedmeshService + "." + fedmeshNamespace + ".svc"}, []net.IP{net.ParseIP("127.0.0.1")})
	if c.servingCert, c.servingKey, err = write(serving, err, "serving"); err != nil {
		return certs{}, err
	}
	admin, err := ca.Client("admin", "system:masters")
	if c.adminCert, c.adminKey, err = write(admin, err, "admin"); err != nil {
		return certs{}, err
	}
	proxy, err := ca.Client("front-proxy-client")
	if c.proxyCert, c.proxyKey, err = write(proxy, err, "front-proxy"); err != nil {
		return certs{}, err
	}
	if c.serviceAccountKey, err = ca.WriteSigningKey(dir, "sa"); err != nil {
		return certs{}, err
	}
	return c, nil
}

func (f *Federation) startEtcd(ctx context.Context) error {
	bin, err := Binary("etcd")
	if err != nil {
		return err
	}
	return retryOnPortClash(func() (bool, error) {
		client, peer := f.opts.Ports.Etcd, f.opts.Ports.EtcdPeer
		fixed := client != 0 || peer != 0
		if client == 0 {
			if client, err = freePort(); err != nil {
				return false, err
			}
		}
		if peer == 0 {
			if peer, err = freePort(); err != nil {
				return false, err
			}
		}
		clientURL, peerURL := "http://"+hostPort(client), "http://"+hostPort(peer)
		p := f.newProcess("etcd", bin, true,
			"--name=fedmesh", "--data-dir="+filepath.Join(f.dir, "etcd"),
			// Nothing here outlives a crash of the machine.
			"--unsafe-no-fsync", "--log-level=warn",
			"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=fedmesh="+peerURL,
		)
		if err := p.start(); err != nil {
			return false, err
		}
		err = f.waitFor(ctx, p, "etcd", func(ctx context.Context) error {
			return httpGet(ctx, clientURL+"/health")
		})
		if err != nil {
			p.stop()
			return p.clashed() && !fixed, err
		}
		f.etcd, f.etcdURL = p, clientURL
		f.say("etcd is healthy on %s", clientURL)
		return false, nil
	})
}

// startupRuns is how many runs of a process that is restarted may end
// before it becomes ready: a server that lost its port to a passing
// connection, say, gets another chance, one that cannot start fails the
// start-up within seconds.
const startupRuns = 3

// waitFor polls check until it passes, the process exits (for good, or
// startupRuns times when it is restarted), or the ready timeout passes. A
// wait that takes long is reported every few seconds.
func (f *Federation) waitFor(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	timeout := f.opts.ReadyTimeout
	if timeout == 0 {
		timeout = defaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, run := time.Now(), p.run()
	report := start.Add(5 * time.Second)
	var last error
	for {
		if ended := p.run() - run + btoi(p.exited()); ended > 0 && (!p.restart || ended >= startupRuns) {
			err := errExited
			if ended > 1 {
				err = fmt.Errorf("%w %d times", errExited, ended)
			}
			return &ProcessError{Name: p.name, Log: p.logPath, Err: err}
		}
		reqCtx, reqCancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(reqCtx)
		reqCancel()
		if last == nil {
			return nil
		}
		if time.Now().After(report) {
			f.say("waiting for %s (%s): %s", what, time.Since(start).Round(time.Second), brief(last))
			report = report.Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return &ProcessError{Name: p.name, Log: p.logPath, Err: fmt.Errorf("%s not ready after %s: %v", what, timeout, last)}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

var failedCheck = regexp.MustCompile(`\[-\]([^ \\]+) failed`)

// brief shortens an error for a progress line: a /readyz reply becomes the
// names of the first checks that fail, anything else its first 200 bytes.
func brief(err error) string {
	s := err.Error()
	if m := failedCheck.FindAllStringSubmatch(s, -1); len(m) > 0 {
		names := make([]string, len(m))
		for i, sub := range m {
			names[i] = strings.TrimPrefix(sub[1], "poststarthook/")
		}
		if len(names) > 3 {
			names = append(names[:3], fmt.Sprintf("and %d more", len(names)-3))
		}
		return "not ready: " + strings.Join(names, ", ")
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// retryOnPortClash runs start until it succeeds, fails for another reason
// than a port taken by someone else, or has tried three times.
func retryOnPortClash(start func() (clashed bool, err error)) error {
	var err error
	for range 3 {
		var clashed bool
		if clashed, err = start(); err == nil || !clashed {
			return err
		}
	}
	return err
}

// clashed reports whether the process's log says its port was taken.
func (p *process) clashed() bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && strings.Contains(string(b), "address already in use")
}
