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
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

const (
	syncerServiceAccount = "fedmesh-syncer"
	// SyncerLease is the namespace/name of the syncers' Lease.
	SyncerLease = fedmeshNamespace + "/fedmesh-syncer"
)

// Syncer is one fedmesh-syncer process of a federation.
type Syncer struct {
	// Name is the process's name and its identity in the Lease.
	Name string

	f    *Federation
	proc *process
	port int
}

// startSyncers runs n fedmesh-syncer processes as the fedmesh-syncer
// ServiceAccount of artifacts/deploy, with the flags of its Deployment
// there and then Options.SyncerArgs. Each serves /healthz, /readyz and
// /metrics over HTTPS with the federation's serving certificate, and
// delegates authentication and authorization to the control plane as that
// ServiceAccount: /metrics is for whom the control plane authorizes, such
// as its admin.
func (f *Federation) startSyncers(ctx context.Context, n int, extraArgs []string) error {
	bin, err := f.fedmeshBinary("fedmesh-syncer")
	if err != nil {
		return err
	}
	kubeconfig, err := f.serviceAccountKubeconfig(ctx, syncerServiceAccount)
	if err != nil {
		return err
	}
	for i := range n {
		port := 0
		if i == 0 {
			port = f.opts.Ports.Syncer
		}
		if port == 0 {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		name := fmt.Sprintf("fedmesh-syncer-%d", i)
		s := &Syncer{Name: name, f: f, port: port}
		s.proc = f.newProcess(name, bin, true, append([]string{
			"--kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
			"--tls-cert-file=" + f.certs.servingCert, "--tls-private-key-file=" + f.certs.servingKey,
			"--leader-elect-namespace=" + fedmeshNamespace,
			"--leader-elect-identity=" + name,
			"--ingress-class=pipy",
		}, extraArgs...)...)
		f.syncers = append(f.syncers, s)
		if err := s.Start(ctx); err != nil {
			return err
		}
		f.say("started %s on %s as system:serviceaccount:%s:%s", name, s.URL(""), fedmeshNamespace, syncerServiceAccount)
	}
	return nil
}

// Syncers are the federation's fedmesh-syncer processes.
func (f *Federation) Syncers() []*Syncer { return f.syncers }

// Syncer is the federation's first fedmesh-syncer.
func (f *Federation) Syncer() *Syncer { return f.syncers[0] }

// Start starts (or restarts, after Stop or Kill) the syncer and waits
// until it serves its endpoints. It may then still be waiting for the
// lease.
func (s *Syncer) Start(ctx context.Context) error {
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.f.waitFor(ctx, s.proc, s.Name, func(ctx context.Context) error {
		code, body, err := s.Get(ctx, s.f.AnonymousConfig(), "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz: %d %s", code, body)
		}
		return err
	})
}

// Stop stops the syncer gently: it stops writing and releases the lease.
func (s *Syncer) Stop() { s.proc.stop() }

// Kill kills the syncer as a crash would: the lease stays taken until it
// expires.
func (s *Syncer) Kill() { s.proc.kill() }

// Log is the path of the syncer's log.
func (s *Syncer) Log() string { return s.proc.logPath }

// URL is the HTTPS URL of a path the syncer serves.
func (s *Syncer) URL(path string) string { return "https://" + hostPort(s.port) + path }

// Get sends a GET of path to the syncer with the credentials of cfg (its
// TLS client certificate, or its bearer token; neither for an anonymous
// request), trusting the federation's CA, and returns the status code and
// the body.
func (s *Syncer) Get(ctx context.Context, cfg *rest.Config, path string) (int, []byte, error) {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(path), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// AnonymousConfig is a client configuration of the control plane that
// trusts the federation's CA and presents no credential.
func (f *Federation) AnonymousConfig() *rest.Config {
	return &rest.Config{Host: f.ControlPlane.Server(), TLSClientConfig: rest.TLSClientConfig{CAFile: f.certs.caFile}}
}

// Metric returns the sum of the samples of a metric of the syncer whose
// labels include every label of match. It scrapes /metrics as the control
// plane's admin, whom the syncer's delegated authorization lets in.
func (s *Syncer) Metric(ctx context.Context, name string, match map[string]string) (float64, error) {
	code, body, err := s.Get(ctx, s.f.ControlPlane.Config(), "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %d %s", code, body)
	}
	return sumSamples(bytes.NewReader(body), name, match)
}

// Writes is how many mutating requests the syncer has sent to members
// since it started.
func (s *Syncer) Writes(ctx context.Context) (float64, error) {
	return s.Metric(ctx, "fedmesh_syncer_writes_total", nil)
}

// sumSamples sums the samples of metric name in the Prometheus text
// format whose labels include match.
func sumSamples(r io.Reader, name string, match map[string]string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") {
			continue // another metric sharing the prefix
		}
		ok := true
		for k, v := range match {
			ok = ok && strings.Contains(","+labels+",", ","+k+"=\""+v+"\",")
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// SyncerLeader returns the syncer holding the Lease, or nil when none does
// (or the Lease names a holder that is not one of the federation's).
func (f *Federation) SyncerLeader(ctx context.Context) (*Syncer, error) {
	ns, name, _ := strings.Cut(SyncerLease, "/")
	l, err := f.ControlPlane.Kube().CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if l.Spec.HolderIdentity == nil {
		return nil, nil
	}
	for _, s := range f.syncers {
		if s.Name == *l.Spec.HolderIdentity {
			return s, nil
		}
	}
	return nil, nil
}
