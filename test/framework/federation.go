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
// Package framework runs real federations on loopback for tests: one etcd, a
// control-plane kube-apiserver with its aggregator, member kube-apiservers,
// a kube-controller-manager beside each kube-apiserver, and fedmesh-apiserver
// registered through the project's own APIService and RBAC manifests. Tests say what they need ("a control plane and 3
// members") and get kubeconfigs and typed clients for each cluster.
package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/membercrds"
	"github.com/fedmesh/fedmesh/test/framework/pki"
)

// Options say what a federation is made of.
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
	// tests that install them as "kubectl fedmesh join" does.
	WithoutMemberCRDs bool
	// SyncerReplicas is the number of fedmesh-syncer processes (1 when
	// unset); they elect a leader through their Lease.
	SyncerReplicas int
	// SyncerArgs are extra flags for fedmesh-syncer; they override the
	// framework's (short leases and retry delays, for tests).
	SyncerArgs []string
	// WithoutControllerManagers runs no kube-controller-manager: namespaces
	// then never finish deleting, no default ServiceAccount appears and the
	// aggregated ClusterRoles (view, edit, admin) stay empty. For the bench,
	// whose figures are fedmesh's own and would otherwise share the CPU
	// with the members' controllers (an EndpointSlice for every Service).
	WithoutControllerManagers bool
}

// Federation is a running set of clusters.
type Federation struct {
	ControlPlane *Cluster
	Members      []*Cluster

	dir     string
	certs   certs
	etcd    *process
	etcdURL string
	// noControllerManagers is Options.WithoutControllerManagers.
	noControllerManagers bool

	fedmesh     *process
	fedmeshPort int
	syncers     []*Syncer

	mu    sync.Mutex
	procs []*process
}

// Cluster is one kube-apiserver of a federation, with its
// kube-controller-manager.
type Cluster struct {
	Name string
	// KubeconfigPath is an admin kubeconfig of the cluster.
	KubeconfigPath string

	f     *Federation
	port  int
	extra []string
	proc  *process
	// kcm is the cluster's kube-controller-manager, one process that
	// every Start starts again.
	kcm *process
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

// Start starts a federation for a test and stops it when the test ends,
// keeping every process's log under _output/test-logs/<test> if it failed.
func Start(t testing.TB, opts Options) *Federation {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real kube-apiservers and etcd; run without -short (make test does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := New(ctx, opts)
	if f != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if dir, err := f.KeepLogs(t.Name()); err == nil {
					t.Logf("logs of every process kept in %s", dir)
				}
			}
			f.Stop()
		})
	}
	if err != nil {
		t.Fatalf("starting federation: %v", err)
	}
	return f
}

// New starts a federation. The caller must Stop it, also when New fails and
// returns a partial one.
func New(ctx context.Context, opts Options) (*Federation, error) {
	dir, err := os.MkdirTemp("", "fedmesh-federation-")
	if err != nil {
		return nil, err
	}
	f := &Federation{dir: dir, noControllerManagers: opts.WithoutControllerManagers}
	for _, d := range []string{"logs", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return f, err
		}
	}
	if err := f.makeCerts(); err != nil {
		return f, fmt.Errorf("certificates: %w", err)
	}
	if err := f.startEtcd(ctx); err != nil {
		return f, fmt.Errorf("etcd: %w", err)
	}

	proxy := []string{
		"--requestheader-client-ca-file=" + f.certs.caFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + f.certs.proxyCert,
		"--proxy-client-key-file=" + f.certs.proxyKey,
	}
	f.ControlPlane = &Cluster{Name: "control-plane", f: f, extra: proxy}
	for _, name := range opts.Members {
		f.Members = append(f.Members, &Cluster{Name: name, f: f})
	}
	// The clusters start in parallel: each kube-apiserver takes seconds to
	// become ready, mostly waiting.
	all := append([]*Cluster{f.ControlPlane}, f.Members...)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	// As "kubectl fedmesh join" does, the members' administrator installs
	// the CRDs: fedmesh's identity may only upgrade them.
	if !opts.WithoutMemberCRDs {
		if err := f.installMemberCRDs(ctx); err != nil {
			return f, fmt.Errorf("member CRDs: %w", err)
		}
	}
	if opts.WithoutFedmesh {
		return f, nil
	}
	if err := f.startFedmesh(ctx, opts.FedmeshArgs); err != nil {
		return f, fmt.Errorf("fedmesh-apiserver: %w", err)
	}
	if opts.WithSyncer {
		if err := f.startSyncers(ctx, max(opts.SyncerReplicas, 1), opts.SyncerArgs); err != nil {
			return f, fmt.Errorf("fedmesh-syncer: %w", err)
		}
	}
	return f, nil
}

// installMemberCRDs installs the member CRDs (pkg/membercrds) into every
// member as its admin, the members in parallel, and waits until each
// member serves them: every CRD reports Established and discovery lists
// its resource, so that a kubectl started right after finds it.
func (f *Federation) installMemberCRDs(ctx context.Context) error {
	crds, err := membercrds.Load()
	if err != nil {
		return err
	}
	served := func(ctx context.Context, m *Cluster, crd *unstructured.Unstructured) error {
		dyn, err := dynamic.NewForConfig(m.Config())
		if err != nil {
			return err
		}
		u, err := dyn.Resource(membercrds.GVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !membercrds.Established(u) {
			return fmt.Errorf("CRD %s not Established", crd.GetName())
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
	errs := make([]error, len(f.Members))
	var wg sync.WaitGroup
	for i, m := range f.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dyn, err := dynamic.NewForConfig(m.Config())
			if err != nil {
				errs[i] = err
				return
			}
			if err := membercrds.Install(ctx, dyn, "fedmesh-test-framework", crds, 30*time.Second); err != nil {
				errs[i] = fmt.Errorf("%s: %w", m.Name, err)
				return
			}
			for _, crd := range crds {
				if err := waitFor(ctx, 30*time.Second, m.proc, func(ctx context.Context) error { return served(ctx, m, crd.Object) }); err != nil {
					errs[i] = fmt.Errorf("%s: %w", m.Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
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

// Dir is the federation's scratch directory.
func (f *Federation) Dir() string { return f.dir }

// Stop stops every process and removes the scratch directory.
func (f *Federation) Stop() {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	os.RemoveAll(f.dir)
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
	return dst, copyDir(filepath.Join(f.dir, "logs"), dst)
}

func (f *Federation) track(p *process) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = append(f.procs, p)
}

func (f *Federation) makeCerts() error {
	dir := filepath.Join(f.dir, "pki")
	ca, err := pki.NewCA("fedmesh-test-ca")
	if err != nil {
		return err
	}
	c := certs{ca: ca}
	if c.caFile, err = ca.WriteCert(dir, "ca"); err != nil {
		return err
	}
	write := func(kp *pki.KeyPair, err error, name string) (string, string, error) {
		if err != nil {
			return "", "", err
		}
		return kp.WriteFiles(dir, name)
	}
	// One serving certificate for every server. The aggregator verifies
	// fedmesh-apiserver's as <service>.<namespace>.svc.
	serving, err := ca.Serving([]string{"localhost", "fedmesh-apiserver.fedmesh.svc"}, []net.IP{net.ParseIP("127.0.0.1")})
	if c.servingCert, c.servingKey, err = write(serving, err, "serving"); err != nil {
		return err
	}
	admin, err := ca.Client("admin", "system:masters")
	if c.adminCert, c.adminKey, err = write(admin, err, "admin"); err != nil {
		return err
	}
	proxy, err := ca.Client("front-proxy-client")
	if c.proxyCert, c.proxyKey, err = write(proxy, err, "front-proxy"); err != nil {
		return err
	}
	if c.serviceAccountKey, err = ca.WriteSigningKey(dir, "sa"); err != nil {
		return err
	}
	f.certs = c
	return nil
}

func (f *Federation) startEtcd(ctx context.Context) error {
	bin, err := Binary("etcd")
	if err != nil {
		return err
	}
	return retryOnPortClash(func() (bool, error) {
		client, err := freePort()
		if err != nil {
			return false, err
		}
		peer, err := freePort()
		if err != nil {
			return false, err
		}
		clientURL, peerURL := "http://"+hostPort(client), "http://"+hostPort(peer)
		p := &process{
			name: "etcd", binary: bin, gentle: true,
			logPath: filepath.Join(f.dir, "logs", "etcd.log"),
			args: []string{
				"--name=fedmesh-test", "--data-dir=" + filepath.Join(f.dir, "etcd"),
				"--unsafe-no-fsync", "--log-level=warn",
				"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
				"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
				"--initial-cluster=fedmesh-test=" + peerURL,
			},
		}
		if err := p.start(); err != nil {
			return false, err
		}
		f.track(p)
		err = waitFor(ctx, 30*time.Second, p, func(ctx context.Context) error {
			return httpGet(ctx, clientURL+"/health")
		})
		if err != nil {
			p.stop()
			return p.clashed(), err
		}
		f.etcd, f.etcdURL = p, clientURL
		return false, nil
	})
}

// Start starts (or restarts, after Stop) the cluster's kube-apiserver and
// then its kube-controller-manager, and waits until both work. A restarted
// cluster keeps its port, so its kubeconfigs stay valid.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	if c.f.noControllerManagers {
		return nil
	}
	return c.startControllerManager(ctx)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	bin, err := Binary("kube-apiserver")
	if err != nil {
		return err
	}
	keepPort := c.port != 0
	return retryOnPortClash(func() (bool, error) {
		if !keepPort {
			if c.port, err = freePort(); err != nil {
				return false, err
			}
		}
		fc := c.f.certs
		args := append([]string{
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(c.port),
			"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
			"--etcd-servers=" + c.f.etcdURL, "--etcd-prefix=/" + c.Name,
			"--tls-cert-file=" + fc.servingCert, "--tls-private-key-file=" + fc.servingKey,
			"--client-ca-file=" + fc.caFile,
			"--service-account-issuer=https://" + c.Name + ".fedmesh.test",
			"--service-account-key-file=" + fc.serviceAccountKey,
			"--service-account-signing-key-file=" + fc.serviceAccountKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			"--authorization-mode=RBAC",
		}, c.extra...)
		p := &process{name: c.Name, binary: bin, args: args, logPath: filepath.Join(c.f.dir, "logs", c.Name+".log")}
		if err := p.start(); err != nil {
			return false, err
		}
		c.proc = p
		c.f.track(p)
		if err := c.writeKubeconfig(); err != nil {
			return false, err
		}
		err := waitFor(ctx, 90*time.Second, p, func(ctx context.Context) error {
			return c.get(ctx, "/readyz")
		})
		if err != nil {
			p.stop()
			return p.clashed() && !keepPort, fmt.Errorf("%s: %w (log: %s)", c.Name, err, p.logPath)
		}
		return false, nil
	})
}

// startControllerManager runs the cluster's kube-controller-manager with
// the flags a loopback cluster needs (no leader election, no serving port,
// the cluster's service-account key and CA), and waits until its
// controllers work: the default ServiceAccount of namespace default exists.
// On a restart that ServiceAccount exists already, and the wait proves
// only that the process started and stays up.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	if c.kcm == nil {
		bin, err := Binary("kube-controller-manager")
		if err != nil {
			return err
		}
		fc := c.f.certs
		c.kcm = &process{
			name: "kube-controller-manager-" + c.Name, binary: bin,
			logPath: filepath.Join(c.f.dir, "logs", "kube-controller-manager-"+c.Name+".log"),
			args: []string{
				"--kubeconfig=" + c.KubeconfigPath,
				// Nothing scrapes it: no port to find or to clash.
				"--bind-address=127.0.0.1", "--secure-port=0",
				"--leader-elect=false",
				"--cluster-name=" + c.Name,
				"--service-account-private-key-file=" + fc.serviceAccountKey,
				"--root-ca-file=" + fc.caFile,
				"--use-service-account-credentials=false",
				// Its first sweep of a new cluster and each namespace
				// deletion (a request per resource type) wait less on
				// the client's default 20 QPS.
				"--kube-api-qps=100", "--kube-api-burst=200",
			},
		}
		c.f.track(c.kcm)
	}
	if err := c.kcm.start(); err != nil {
		return err
	}
	err := waitFor(ctx, 60*time.Second, c.kcm, func(ctx context.Context) error {
		_, err := c.Kube().CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		c.kcm.stop()
		return fmt.Errorf("%s: kube-controller-manager: %w (log: %s)", c.Name, err, c.kcm.logPath)
	}
	return nil
}

// Stop kills the cluster's kube-controller-manager and kube-apiserver, as
// a crash of the machine would.
func (c *Cluster) Stop() {
	if c.kcm != nil {
		c.kcm.stop()
	}
	if c.proc != nil {
		c.proc.stop()
	}
}

// ControllerManagerPID is the process id of the cluster's running
// kube-controller-manager, or 0.
func (c *Cluster) ControllerManagerPID() int {
	if c.kcm == nil {
		return 0
	}
	return c.kcm.pid()
}

// Server is the URL of the cluster's API.
func (c *Cluster) Server() string { return "https://" + hostPort(c.port) }

// Config is an admin client configuration of the cluster.
func (c *Cluster) Config() *rest.Config {
	fc := c.f.certs
	return &rest.Config{
		Host: c.Server(),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: fc.caFile, CertFile: fc.adminCert, KeyFile: fc.adminKey,
		},
		QPS: -1,
	}
}

// UserConfig is a client configuration of the cluster for a user with a
// certificate of the federation's CA, who holds no permission unless a
// test grants one.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := c.f.certs.ca.Client(user, groups...)
	if err != nil {
		return nil, err
	}
	cfg := c.Config()
	cfg.TLSClientConfig = rest.TLSClientConfig{CAFile: c.f.certs.caFile, CertData: kp.CertPEM, KeyData: kp.KeyPEM}
	return cfg, nil
}

// Kube is an admin clientset of the cluster.
func (c *Cluster) Kube() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(c.Config())
}

// Fedmesh is an admin clientset of flomesh.io on the cluster: on the
// control plane, fedmesh-apiserver through the aggregator.
func (c *Cluster) Fedmesh() versioned.Interface {
	return versioned.NewForConfigOrDie(c.Config())
}

// Kubeconfig returns the cluster's admin kubeconfig, with every credential
// embedded, as a user would paste it into a Cluster object.
func (c *Cluster) Kubeconfig() ([]byte, error) {
	fc := c.f.certs
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server(), CertificateAuthorityData: fc.ca.CertPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: read(fc.adminCert), ClientKeyData: read(fc.adminKey)}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "admin"}
	cfg.CurrentContext = c.Name
	return clientcmd.Write(*cfg)
}

func (c *Cluster) writeKubeconfig() error {
	b, err := c.Kubeconfig()
	if err != nil {
		return err
	}
	c.KubeconfigPath = filepath.Join(c.f.dir, c.Name+".kubeconfig")
	return os.WriteFile(c.KubeconfigPath, b, 0o600)
}

func (c *Cluster) get(ctx context.Context, path string) error {
	client, err := rest.UnversionedRESTClientFor(withCodecs(c.Config()))
	if err != nil {
		return err
	}
	return client.Get().AbsPath(path).Do(ctx).Error()
}

// waitFor polls check until it passes, the process dies, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, p *process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("%s exited (log: %s)", p.name, p.logPath)
		}
		reqCtx, reqCancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(reqCtx)
		reqCancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v", p.name, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
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
