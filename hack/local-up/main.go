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
// Command local-up brings up the demo federation of the Flomesh
// multi-cluster walkthrough on this machine, on 127.0.0.1 and without
// containers, with the library the integration tests use
// (test/framework/loopback), so that both run the same servers with the
// same flags and certificates:
//
//   - one etcd, shared by every server through distinct key prefixes;
//   - a control-plane kube-apiserver, with the aggregation layer configured;
//   - three member kube-apiservers, cluster-1, cluster-2 and cluster-3;
//   - a kube-controller-manager beside each kube-apiserver, with its default
//     controllers: namespaces finish deleting, every namespace gets its
//     default ServiceAccount, and the view/edit/admin ClusterRoles aggregate
//     the rules of the roles labelled for them (fedmesh:view, fedmesh:edit);
//   - fedmesh-apiserver, registered on the control plane with the manifests
//     in artifacts/deploy/ and running as its ServiceAccount;
//   - fedmesh-syncer, also as its own ServiceAccount, which writes the
//     federation's ServiceImports, policies, Ingresses and export conditions
//     into the members.
//
// It then joins the members with "kubectl fedmesh join" (the plugin of
// _output/bin, through kubectl), each with its gateway at its
// fedmesh-gateway's ingress listener, and starts that fedmesh-gateway per
// member, as the member's fedmesh-system/fedmesh-gateway ServiceAccount,
// which join makes. It writes the gateways' listeners into
// _output/local-up/gateways.env and prints them, prints "fedmesh is ready"
// and the commands to try, and stays in the foreground. A server that
// exits is restarted after a back-off, as a Deployment's pod would be, and
// the output says so. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything
// it started.
//
// There is no kubelet or scheduler: the controller managers make the
// ReplicaSets and Pods of the Deployments of artifacts/deploy/, but the Pods
// stay Pending and never run. So the walkthrough's backends are processes
// of local-up's own: as root, it deploys the walkthrough's httpbin
// (artifacts/examples/httpbin.yaml) in cluster-1 and cluster-3, as the
// walkthrough does before it exports it, and serves each from an HTTP
// server in a network namespace that it makes (test/framework/netns), at
// an address that an EndpointSlice of each of httpbin's Services names:
// the members' gateways reach it as kube-proxy reaches a Pod. Without
// root, the federation runs without backends, and local-up says so.
//
// Usage:
//
//	make local-up            # builds what is needed, then runs this command
//	go run ./hack/local-up -write-certs DIR
//	                         # only writes the certificates into DIR (kept if
//	                         # DIR/ca.crt exists), for hack/run-standalone.sh
//
// It needs _output/bin/{etcd,kube-apiserver,kube-controller-manager,kubectl}
// from hack/install-test-binaries.sh and _output/bin/{fedmesh-apiserver,
// fedmesh-syncer,kubectl-fedmesh} from make build.
//
// Everything is written to _output/local-up/, which is wiped on every start:
//
//	pki/                    CA, serving and client certificates
//	etcd/                   etcd's data
//	logs/<server>.log       one log per server (kube-controller-manager-<cluster>.log
//	                        for the controller managers, fedmesh-syncer-0.log)
//	<cluster>.kubeconfig    admin kubeconfigs of control-plane and cluster-1..3
//	<cluster>-fedmesh-gateway.kubeconfig
//	                        the ServiceAccount token each member's gateway runs with
//	gateways.env            the gateways' listeners, CLUSTER_1_INGRESS=127.0.0.1:PORT,
//	                        CLUSTER_1_EGRESS=..., one line per member and listener
//	fedmesh-apiserver.kubeconfig, fedmesh-syncer.kubeconfig
//	                        the ServiceAccount tokens the two run with
//	local-up.pid            the lock: pid of the running local-up
//
// Environment (all servers listen on 127.0.0.1 only):
//
//	ETCD_PORT           etcd client port                 (default 22379)
//	ETCD_PEER_PORT      etcd peer port                   (default 22380)
//	CONTROL_PLANE_PORT  control-plane kube-apiserver     (default 26443)
//	CLUSTER_1_PORT      cluster-1 kube-apiserver         (default 26444)
//	CLUSTER_2_PORT      cluster-2 kube-apiserver         (default 26445)
//	CLUSTER_3_PORT      cluster-3 kube-apiserver         (default 26446)
//	FEDMESH_PORT        fedmesh-apiserver                (default 28443)
//	SYNCER_PORT         fedmesh-syncer's HTTPS /healthz and /metrics (default 28444)
//	CLUSTER_1_INGRESS_PORT  cluster-1's gateway: ingress, the Cluster's gatewayPort (default 28081)
//	CLUSTER_1_EGRESS_PORT   cluster-1's gateway: egress, the HTTP proxy of its clients (default 28181)
//	CLUSTER_1_METRICS_PORT  cluster-1's gateway: /metrics, /healthz, /readyz (default 28281)
//	                    and the same for CLUSTER_2 (28082, 28182, 28282) and CLUSTER_3 (28083, 28183, 28283)
//	READY_TIMEOUT       seconds to wait for each server to become ready (default 90)
//
// The default ports are below Linux's ephemeral range (32768-60999): a
// port there may be taken, between the check at start and the server's
// bind, by the local end of any outgoing connection (the kube-apiservers'
// own, to etcd) or by a listener on port 0.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fedmesh/fedmesh/test/framework/loopback"
	"github.com/fedmesh/fedmesh/test/framework/netns"
	"github.com/fedmesh/fedmesh/test/framework/walkthrough"
)

// member is a cluster of the walkthrough: its kube-apiserver's port and
// its gateway's, each with the variable that overrides it.
type member struct {
	name string
	// envPrefix starts the member's variables: CLUSTER_1 for cluster-1.
	envPrefix string
	port      int
	gateway   loopback.GatewayPorts
	// httpbin: the walkthrough deploys httpbin in this member at first.
	httpbin bool
}

var members = []member{
	{"cluster-1", "CLUSTER_1", 26444, loopback.GatewayPorts{Ingress: 28081, Egress: 28181, Metrics: 28281}, true},
	{"cluster-2", "CLUSTER_2", 26445, loopback.GatewayPorts{Ingress: 28082, Egress: 28182, Metrics: 28282}, false},
	{"cluster-3", "CLUSTER_3", 26446, loopback.GatewayPorts{Ingress: 28083, Egress: 28183, Metrics: 28283}, true},
}

// clusterKey is a member's key: local-up's members take every default.
func clusterKey(name string) string { return "default/default/default/" + name }

func main() {
	writeCerts := flag.String("write-certs", "", "only write the certificates into this directory, unless it holds some already, and exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-write-certs DIR]\n\nRuns the federation of make local-up until interrupted; see hack/local-up/main.go.\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *writeCerts != "" {
		if _, err := os.Stat(filepath.Join(*writeCerts, "ca.crt")); err == nil {
			return
		}
		if err := loopback.WriteCertificates(*writeCerts); err != nil {
			fmt.Fprintln(os.Stderr, "!!!", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

// localUp is one run: its settings and what it holds.
type localUp struct {
	root, binDir, workDir string
	start                 time.Time
	ports                 loopback.Ports
	gatewayPorts          map[string]loopback.GatewayPorts
	readyTimeout          time.Duration
	// walkthrough holds the walkthrough's httpbin servers, when local-up
	// runs as root; backendsErr says why there are none.
	walkthrough *walkthrough.Env
	backendsErr error

	outMu sync.Mutex
}

func run() int {
	u := &localUp{start: time.Now()}
	root, err := loopback.RepoRoot()
	if err != nil {
		return u.fail(err)
	}
	if err := os.Chdir(root); err != nil {
		return u.fail(err)
	}
	u.root, u.binDir, u.workDir = root, filepath.Join(root, "_output", "bin"), filepath.Join(root, "_output", "local-up")
	if err := u.settings(); err != nil {
		return u.fail(err)
	}
	if err := u.checkBinaries(); err != nil {
		return u.fail(err)
	}
	lock, err := u.lock()
	if err != nil {
		return u.fail(err)
	}
	// The lock is held by the open file: it goes with this process however
	// it ends, and is not passed on to the servers (Go opens files
	// close-on-exec).
	defer lock.Close()
	lockPath := lock.Name()
	if err := u.checkPorts(); err != nil {
		os.Remove(lockPath)
		return u.fail(err)
	}
	if err := u.wipe(filepath.Base(lockPath)); err != nil {
		os.Remove(lockPath)
		return u.fail(err)
	}

	// A signal cancels the start-up, or ends the wait once ready. Go
	// restores SIGINT even when it was ignored at start (as for a
	// background job of a shell without job control), so "make local-up &"
	// stops on SIGINT too.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() { cancel(fmt.Errorf("%s received", signalName(<-sigs))) }()

	f, err := u.up(ctx)
	if err != nil && ctx.Err() == nil {
		u.failed(err)
		u.stop(f, lockPath)
		fmt.Fprintf(os.Stderr, "!!! local-up failed after %s; logs are in %s\n", u.elapsed(), filepath.Join(u.workDir, "logs"))
		return 1
	}
	if ctx.Err() == nil {
		u.printInstructions(f)
		<-ctx.Done()
	}
	u.say("\n%v", context.Cause(ctx))
	u.stop(f, lockPath)
	u.say("local-up stopped")
	return 0
}

// up starts the federation and joins its members.
func (u *localUp) up(ctx context.Context) (*loopback.Federation, error) {
	var names []string
	for _, m := range members {
		names = append(names, m.name)
	}
	u.log("starting etcd, control-plane and %s in %s", strings.Join(names, ", "), u.rel(u.workDir))
	f, err := loopback.New(ctx, loopback.Options{
		Dir:           u.workDir,
		Members:       names,
		WithSyncer:    true,
		FedmeshBinDir: u.binDir,
		// kubectl fedmesh join installs them, with the member's admin
		// credentials, as it would in a real member.
		WithoutMemberCRDs: true,
		Ports:             u.ports,
		ReadyTimeout:      u.readyTimeout,
		Restart:           true,
		Log:               u.log,
	})
	if err != nil {
		return f, err
	}
	if err := u.waitForLease(ctx, f); err != nil {
		return f, err
	}
	if err := u.join(ctx, f); err != nil {
		return f, err
	}
	if err := u.startGateways(ctx, f); err != nil {
		return f, err
	}
	return f, u.deployHTTPBin(ctx, f)
}

// startGateways starts a fedmesh-gateway per member, in parallel, as the
// ServiceAccount join made, and writes gateways.env.
func (u *localUp) startGateways(ctx context.Context, f *loopback.Federation) error {
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.StartGateway(ctx, f.Member(m.name), clusterKey(m.name), u.gatewayPorts[m.name])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# The listeners of each member's fedmesh-gateway, written by make local-up.\n" +
		"# curl -x http://$CLUSTER_2_EGRESS http://httpbin.httpbin:8080/ is a request of a client in cluster-2.\n")
	for _, m := range members {
		g := f.Gateway(m.name)
		fmt.Fprintf(&b, "%s_INGRESS=%s\n%s_EGRESS=%s\n", m.envPrefix, g.IngressAddr(), m.envPrefix, g.EgressAddr())
	}
	path := filepath.Join(u.workDir, "gateways.env")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	u.log("wrote %s", u.rel(path))
	return nil
}

// deployHTTPBin deploys the walkthrough's httpbin in the members that have
// it at first, as root: the manifest of artifacts/examples, unchanged but
// for ${CLUSTER_NAME}, and, since its Pods never run, a backend in a
// network namespace of its own, published by an EndpointSlice of each of
// the manifest's Services (walkthrough.DeployHTTPBin, as make demo and the
// integration test deploy it). Without root it says why there is none.
func (u *localUp) deployHTTPBin(ctx context.Context, f *loopback.Federation) error {
	if err := netns.Available(); err != nil {
		u.backendsErr = err
		u.log("%v: cluster-1 and cluster-3 run no httpbin (run local-up as root for make demo)", err)
		return nil
	}
	u.walkthrough = &walkthrough.Env{
		Root:         u.root,
		Kubectl:      filepath.Join(u.binDir, "kubectl"),
		ControlPlane: f.ControlPlane.KubeconfigPath,
		Members:      map[string]string{},
		Show:         u.rel,
		Log:          func(format string, args ...any) { u.log("  "+format, args...) },
	}
	for _, m := range members {
		u.walkthrough.Members[m.name] = f.Member(m.name).KubeconfigPath
	}
	for _, m := range members {
		if !m.httpbin {
			continue
		}
		u.log("deploying httpbin in %s, as the walkthrough does", m.name)
		if _, err := u.walkthrough.DeployHTTPBin(ctx, m.name); err != nil {
			return fmt.Errorf("httpbin of %s: %w", m.name, err)
		}
	}
	return nil
}

// waitForLease waits until the syncer holds its Lease, as its Deployment's
// replica would before it writes anything.
func (u *localUp) waitForLease(ctx context.Context, f *loopback.Federation) error {
	ctx, cancel := context.WithTimeout(ctx, u.readyTimeout)
	defer cancel()
	for {
		leader, err := f.SyncerLeader(ctx)
		if err == nil && leader == f.Syncer() {
			u.log("%s holds the Lease %s (metrics on %s, for the admin's certificate)", leader.Name, loopback.SyncerLease, leader.URL("/metrics"))
			return nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return &loopback.ProcessError{Name: f.Syncer().Name, Log: f.Syncer().Log(),
					Err: fmt.Errorf("did not take the Lease %s within %s", loopback.SyncerLease, u.readyTimeout)}
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// join joins every member with kubectl fedmesh (cmd/kubectl-fedmesh, found
// by kubectl on the PATH): in the member, the ServiceAccount
// fedmesh-system/fedmesh and the ClusterRole fedmesh:member with exactly the
// permissions fedmesh needs there, the member CRDs (installed with the
// member's admin credentials) and the admission policies that confine
// fedmesh to its own objects; on the control plane, a Cluster whose
// credentials Secret holds only a token of that ServiceAccount. Each join
// waits until fedmesh reports the member Ready. The members are distinct,
// so they join in parallel.
func (u *localUp) join(ctx context.Context, f *loopback.Federation) error {
	kubectl := filepath.Join(u.binDir, "kubectl")
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, kubectl, "fedmesh", "join", m.name,
				"--kubeconfig="+f.ControlPlane.KubeconfigPath,
				"--member-kubeconfig="+f.Member(m.name).KubeconfigPath,
				"--gateway-host=127.0.0.1", "--gateway-port="+strconv.Itoa(u.gatewayPorts[m.name].Ingress),
				"--wait", "--timeout=60s")
			cmd.Env = append(os.Environ(), "PATH="+u.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			// As the servers: a Ctrl-C reaches local-up only, which then
			// cancels the join.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("kubectl fedmesh join %s failed: %v\n%s", m.name, err, strings.TrimSpace(string(out)))
				return
			}
			u.log("joined %s (gateway 127.0.0.1:%d, its fedmesh-gateway's ingress); it is Ready", m.name, u.gatewayPorts[m.name].Ingress)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stop stops everything that was started, and releases the lock.
func (u *localUp) stop(f *loopback.Federation, lockPath string) {
	if f != nil {
		u.say("stopping every server")
		f.Stop()
	}
	if u.walkthrough != nil {
		if err := u.walkthrough.Close(); err != nil {
			u.say("removing httpbin's network namespaces: %v", err)
		}
	}
	os.Remove(lockPath)
}

// settings reads the ports and the ready timeout from the environment.
func (u *localUp) settings() error {
	port := func(name string, def int) (int, error) {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("%s=%s is not a port number", name, v)
		}
		return n, nil
	}
	var errs []error
	set := func(dst *int, name string, def int) {
		n, err := port(name, def)
		*dst = n
		errs = append(errs, err)
	}
	set(&u.ports.Etcd, "ETCD_PORT", 22379)
	set(&u.ports.EtcdPeer, "ETCD_PEER_PORT", 22380)
	set(&u.ports.ControlPlane, "CONTROL_PLANE_PORT", 26443)
	u.ports.Members = map[string]int{}
	u.gatewayPorts = map[string]loopback.GatewayPorts{}
	for _, m := range members {
		var n int
		set(&n, m.envPrefix+"_PORT", m.port)
		u.ports.Members[m.name] = n
		var g loopback.GatewayPorts
		set(&g.Ingress, m.envPrefix+"_INGRESS_PORT", m.gateway.Ingress)
		set(&g.Egress, m.envPrefix+"_EGRESS_PORT", m.gateway.Egress)
		set(&g.Metrics, m.envPrefix+"_METRICS_PORT", m.gateway.Metrics)
		u.gatewayPorts[m.name] = g
	}
	set(&u.ports.Fedmesh, "FEDMESH_PORT", 28443)
	set(&u.ports.Syncer, "SYNCER_PORT", 28444)
	u.readyTimeout = 90 * time.Second
	if v := os.Getenv("READY_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("READY_TIMEOUT=%s is not a number of seconds", v))
		}
		u.readyTimeout = time.Duration(n) * time.Second
	}
	return errors.Join(errs...)
}

func (u *localUp) checkBinaries() error {
	var missing []string
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "fedmesh-apiserver", "fedmesh-syncer", "fedmesh-gateway", "kubectl-fedmesh"} {
		if st, err := os.Stat(filepath.Join(u.binDir, bin)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing in %s: %s\n"+
		"    etcd, kube-apiserver, kube-controller-manager and kubectl: run hack/install-test-binaries.sh (or make test-binaries)\n"+
		"    fedmesh-apiserver, fedmesh-syncer, fedmesh-gateway, kubectl-fedmesh: run make build\n"+
		"    or simply run make local-up, which does both before starting this command.",
		u.binDir, strings.Join(missing, " "))
}

// lock takes the lock that makes a second local-up refuse to start: an
// exclusive flock on _output/local-up/local-up.pid, which holds the pid of
// its holder. A stale file of a local-up that died is simply taken over,
// as its lock went with it.
func (u *localUp) lock() (*os.File, error) {
	if err := os.MkdirAll(u.workDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(u.workDir, "local-up.pid")
	// Opened without truncating: the pid of a running holder must stay
	// readable.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		holder := "unknown"
		if b, err := os.ReadFile(path); err == nil {
			if line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]); line != "" {
				holder = line
			}
		}
		return nil, fmt.Errorf("another local-up is already running (pid %s, lock %s); stop it with Ctrl-C or: kill %s", holder, path, holder)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkPorts refuses to start when another process listens on one of the
// ports, naming the variable that moves it.
func (u *localUp) checkPorts() error {
	type check struct {
		name, envVar string
		port         int
	}
	checks := []check{
		{"etcd", "ETCD_PORT", u.ports.Etcd},
		{"etcd peer", "ETCD_PEER_PORT", u.ports.EtcdPeer},
		{"control-plane", "CONTROL_PLANE_PORT", u.ports.ControlPlane},
	}
	for _, m := range members {
		checks = append(checks, check{m.name, m.envPrefix + "_PORT", u.ports.Members[m.name]})
	}
	checks = append(checks, check{"fedmesh-apiserver", "FEDMESH_PORT", u.ports.Fedmesh}, check{"fedmesh-syncer", "SYNCER_PORT", u.ports.Syncer})
	for _, m := range members {
		g := u.gatewayPorts[m.name]
		checks = append(checks,
			check{m.name + "'s gateway ingress", m.envPrefix + "_INGRESS_PORT", g.Ingress},
			check{m.name + "'s gateway egress", m.envPrefix + "_EGRESS_PORT", g.Egress},
			check{m.name + "'s gateway metrics", m.envPrefix + "_METRICS_PORT", g.Metrics})
	}
	seen := map[int]string{}
	var dup []string
	for _, c := range checks {
		if other, ok := seen[c.port]; ok {
			dup = append(dup, fmt.Sprintf("    %d: %s and %s", c.port, other, c.name))
		}
		seen[c.port] = c.name
	}
	if len(dup) > 0 {
		return fmt.Errorf("cannot start: two servers would share a port:\n%s", strings.Join(dup, "\n"))
	}
	var busy []string
	for _, c := range checks {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)))
		if err != nil {
			busy = append(busy, fmt.Sprintf("    127.0.0.1:%d (%s; set %s to use another port)", c.port, c.name, c.envVar))
			continue
		}
		l.Close()
	}
	if len(busy) > 0 {
		return fmt.Errorf("cannot start: these ports are already in use:\n%s", strings.Join(busy, "\n"))
	}
	return nil
}

// wipe empties the work directory for a fresh start. The lock file stays:
// removing it while it is held would let a second run lock a new file of
// the same name.
func (u *localUp) wipe(keep string) error {
	entries, err := os.ReadDir(u.workDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(u.workDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (u *localUp) printInstructions(f *loopback.Federation) {
	u.log("all up")
	rel := u.rel(u.workDir)
	u.outMu.Lock()
	defer u.outMu.Unlock()
	fmt.Printf(`fedmesh is ready

  export KUBECONFIG=%[1]s/control-plane.kubeconfig
  kubectl get clusters -o wide
  kubectl get apiservice %[3]s
  kubectl api-resources --api-group=flomesh.io

The members: kubectl --kubeconfig %[2]s/cluster-1.kubeconfig get namespaces (also cluster-2, cluster-3)
fedmesh-syncer writes into each member the ServiceImports of what the others export, the
policies, and the Ingresses of its own exports:
  kubectl --kubeconfig %[2]s/cluster-2.kubeconfig get serviceimports,gtp -A

Each member's fedmesh-gateway (%[2]s/gateways.env):
`, u.workDir, rel, loopback.APIServiceName)
	for _, m := range members {
		g := f.Gateway(m.name)
		fmt.Printf("  %s_INGRESS=%s  %s_EGRESS=%s\n", m.envPrefix, g.IngressAddr(), m.envPrefix, g.EgressAddr())
	}
	if u.backendsErr != nil {
		fmt.Printf(`
%v: no httpbin runs, so make demo cannot replay the walkthrough's traffic.
`, u.backendsErr)
	} else {
		fmt.Printf(`
httpbin runs in cluster-1 and cluster-3, as the walkthrough deploys it. Replay the walkthrough:
  make demo
or by hand, as a client in cluster-2 (404 until httpbin is exported; then, with no policy, a 503 that says why):
  . %[1]s/gateways.env; curl -i -x http://$CLUSTER_2_EGRESS http://httpbin.httpbin:8080/
`, rel)
	}
	fmt.Printf(`
Logs: %[1]s/logs/   A server that exits is restarted, and said so here. Press Ctrl-C to stop everything.
`, rel)
}

// failed reports an error of the start-up and, when a server is to blame,
// the last lines of its log.
func (u *localUp) failed(err error) {
	u.outMu.Lock()
	defer u.outMu.Unlock()
	fmt.Fprintf(os.Stderr, "!!! %v\n", err)
	var pe *loopback.ProcessError
	if !errors.As(err, &pe) {
		return
	}
	fmt.Fprintf(os.Stderr, "--- last lines of %s:\n", u.rel(pe.Log))
	for _, line := range tail(pe.Log, 20) {
		fmt.Fprintln(os.Stderr, line)
	}
	fmt.Fprintln(os.Stderr, "---")
}

// fail reports an error found before anything started.
func (u *localUp) fail(err error) int {
	fmt.Fprintf(os.Stderr, "!!! %v\n", err)
	return 1
}

// log prints a progress line prefixed with the time since the start.
func (u *localUp) log(format string, args ...any) {
	u.say("[%6s] %s", u.elapsed(), fmt.Sprintf(format, args...))
}

func (u *localUp) say(format string, args ...any) {
	u.outMu.Lock()
	defer u.outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func (u *localUp) elapsed() string {
	return fmt.Sprintf("%.1fs", time.Since(u.start).Seconds())
}

// rel is path relative to the repository's root, where make runs.
func (u *localUp) rel(path string) string {
	if r, err := filepath.Rel(u.root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
