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
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

const (
	// GatewayNamespace and GatewayServiceAccount are the identity of
	// fedmesh-gateway in a member, which "kubectl fedmesh join" makes with
	// the rules of pkg/memberrbac.
	GatewayNamespace      = "fedmesh-system"
	GatewayServiceAccount = "fedmesh-gateway"
)

// GatewayPorts are the loopback ports of one member's fedmesh-gateway; a
// zero port is picked free.
type GatewayPorts struct {
	// Ingress serves the member's Ingresses: the Cluster's gatewayPort.
	Ingress int
	// Egress is the HTTP forward proxy of the member's clients.
	Egress int
	// Metrics serves /metrics, /healthz and /readyz.
	Metrics int
}

// Gateway is one member's fedmesh-gateway process.
type Gateway struct {
	// Name is the process's name, fedmesh-gateway-<member>.
	Name string
	// Member is the cluster it serves.
	Member *Cluster
	// ClusterKey is the member's key in the federation.
	ClusterKey string
	Ports      GatewayPorts

	f    *Federation
	proc *process
}

// StartGateway runs fedmesh-gateway for member m, whose key in the
// federation is key, on 127.0.0.1 with ports, and waits until it is ready.
// It runs as the member's ServiceAccount fedmesh-system/fedmesh-gateway,
// which "kubectl fedmesh join" makes: a token of it from the TokenRequest
// API, valid for 24 hours, in <dir>/<member>-fedmesh-gateway.kubeconfig. So
// the gateway reads only what the rules join grants it allow. args are
// extra flags. It is supervised as Options.Restart says, and stopped by
// Stop.
func (f *Federation) StartGateway(ctx context.Context, m *Cluster, key string, ports GatewayPorts, args ...string) (*Gateway, error) {
	bin, err := f.fedmeshBinary("fedmesh-gateway")
	if err != nil {
		return nil, err
	}
	for _, p := range []*int{&ports.Ingress, &ports.Egress, &ports.Metrics} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	kubeconfig, err := m.serviceAccountKubeconfig(ctx, GatewayNamespace, GatewayServiceAccount)
	if err != nil {
		return nil, err
	}
	g := &Gateway{Name: "fedmesh-gateway-" + m.Name, Member: m, ClusterKey: key, Ports: ports, f: f}
	g.proc = f.newProcess(g.Name, bin, true, append([]string{
		"--kubeconfig=" + kubeconfig,
		"--cluster-key=" + key,
		"--ingress-address=" + hostPort(ports.Ingress),
		"--egress-address=" + hostPort(ports.Egress),
		"--metrics-address=" + hostPort(ports.Metrics),
		"--ingress-class=pipy",
	}, args...)...)
	f.mu.Lock()
	f.gateways = append(f.gateways, g)
	f.mu.Unlock()
	if err := g.Start(ctx); err != nil {
		return g, err
	}
	f.say("started %s (ingress %s, egress %s, metrics %s) as system:serviceaccount:%s:%s of %s",
		g.Name, g.IngressAddr(), g.EgressAddr(), g.MetricsAddr(), GatewayNamespace, GatewayServiceAccount, m.Name)
	return g, nil
}

// Gateways are the gateways StartGateway started.
func (f *Federation) Gateways() []*Gateway {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Gateway(nil), f.gateways...)
}

// Gateway returns the gateway of the member of that name, or nil.
func (f *Federation) Gateway(member string) *Gateway {
	for _, g := range f.Gateways() {
		if g.Member.Name == member {
			return g
		}
	}
	return nil
}

// Start starts (or restarts, after Stop or Kill) the gateway and waits
// until its /readyz answers 200: it has listed its member's objects.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.proc.start(); err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	return g.f.waitFor(ctx, g.proc, g.Name, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.MetricsAddr()+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
}

// Stop stops the gateway gently: it finishes the requests in flight.
func (g *Gateway) Stop() { g.proc.stop() }

// Kill kills the gateway as a crash would.
func (g *Gateway) Kill() { g.proc.kill() }

// PID is the process id of the running gateway, or 0.
func (g *Gateway) PID() int { return g.proc.pid() }

// Log is the path of the gateway's log.
func (g *Gateway) Log() string { return g.proc.logPath }

// IngressAddr, EgressAddr and MetricsAddr are the gateway's listeners,
// 127.0.0.1:PORT.
func (g *Gateway) IngressAddr() string { return hostPort(g.Ports.Ingress) }
func (g *Gateway) EgressAddr() string  { return hostPort(g.Ports.Egress) }
func (g *Gateway) MetricsAddr() string { return hostPort(g.Ports.Metrics) }

// serviceAccountKubeconfig writes <dir>/<cluster>-<serviceAccount>.kubeconfig,
// a kubeconfig of the cluster holding a token, valid for 24 hours, of the
// ServiceAccount namespace/serviceAccount there.
func (c *Cluster) serviceAccountKubeconfig(ctx context.Context, namespace, serviceAccount string) (string, error) {
	tr, err := c.Kube().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s in %s (does kubectl fedmesh join make it?): %w", namespace, serviceAccount, c.Name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server(), CertificateAuthorityData: c.f.certs.ca.CertPEM}
	cfg.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[serviceAccount] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: serviceAccount}
	cfg.CurrentContext = serviceAccount
	path := filepath.Join(c.f.dir, c.Name+"-"+serviceAccount+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}
