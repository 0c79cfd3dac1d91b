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
	"os"
	"path/filepath"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
)

// Cluster is one kube-apiserver of a federation, with its
// kube-controller-manager.
type Cluster struct {
	Name string
	// KubeconfigPath is an admin kubeconfig of the cluster,
	// <dir>/<name>.kubeconfig.
	KubeconfigPath string

	f     *Federation
	port  int
	extra []string
	proc  *process
	// kcm is the cluster's kube-controller-manager, one process that
	// every Start starts again.
	kcm *process
}

// Start starts (or restarts, after Stop) the cluster's kube-apiserver and
// then its kube-controller-manager, and waits until both work. A restarted
// cluster keeps its port, so its kubeconfigs stay valid.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	if c.f.opts.WithoutControllerManagers {
		return nil
	}
	return c.startControllerManager(ctx)
}

// startAPIServer runs the cluster's kube-apiserver with the flags every
// kube-apiserver needs on loopback: an advertise address of 127.0.0.1 and
// no endpoint reconciler (the kubernetes Service's Endpoints reject
// loopback addresses), the three service-account flags with the shared
// sa.key, RBAC, a service range, the serving certificate, and the CA that
// client certificates are verified against. Each cluster keeps its objects
// under its own etcd prefix.
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
		p := c.f.newProcess(c.Name, bin, false, append([]string{
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(c.port),
			"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
			"--etcd-servers=" + c.f.etcdURL, "--etcd-prefix=/" + c.Name,
			"--tls-cert-file=" + fc.servingCert, "--tls-private-key-file=" + fc.servingKey,
			"--client-ca-file=" + fc.caFile,
			"--service-account-issuer=https://" + c.Name + ".fedmesh.invalid",
			"--service-account-key-file=" + fc.serviceAccountKey,
			"--service-account-signing-key-file=" + fc.serviceAccountKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			"--authorization-mode=RBAC",
		}, c.extra...)...)
		if err := p.start(); err != nil {
			return false, err
		}
		c.proc = p
		if err := c.writeKubeconfig(); err != nil {
			return false, err
		}
		err := c.f.waitFor(ctx, p, c.Name+"'s kube-apiserver", func(ctx context.Context) error {
			return c.get(ctx, "/readyz")
		})
		if err != nil {
			p.stop()
			return p.clashed() && !keepPort, err
		}
		c.f.say("%s is ready on %s", c.Name, c.Server())
		return false, nil
	})
}

// startControllerManager runs the cluster's kube-controller-manager with
// its default controllers, as the cluster's admin
// (--use-service-account-credentials=false: one identity for every
// controller), without leader election (there is one replica) and without
// a serving port (nothing scrapes it: no port to pick or to clash). It
// signs legacy ServiceAccount token Secrets with the clusters' sa.key and
// publishes the CA as kube-root-ca.crt in every namespace. It waits until
// the controllers work: the default ServiceAccount of namespace default
// exists. On a restart that ServiceAccount exists already, and the wait
// proves only that the process started and stays up.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	if c.kcm == nil {
		bin, err := Binary("kube-controller-manager")
		if err != nil {
			return err
		}
		fc := c.f.certs
		c.kcm = c.f.newProcess("kube-controller-manager-"+c.Name, bin, false,
			"--kubeconfig="+c.KubeconfigPath,
			"--bind-address=127.0.0.1", "--secure-port=0",
			"--leader-elect=false",
			"--cluster-name="+c.Name,
			"--service-account-private-key-file="+fc.serviceAccountKey,
			"--root-ca-file="+fc.caFile,
			"--use-service-account-credentials=false",
			// Its first sweep of a new cluster and each namespace
			// deletion (a request per resource type) wait less on the
			// client's default 20 QPS. A deleted namespace still takes
			// about 5 s to go: the namespace controller waits that long
			// before it starts.
			"--kube-api-qps=100", "--kube-api-burst=200",
		)
	}
	if err := c.kcm.start(); err != nil {
		return err
	}
	err := c.f.waitFor(ctx, c.kcm, c.Name+"'s kube-controller-manager", func(ctx context.Context) error {
		_, err := c.Kube().CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		c.kcm.stop()
		return err
	}
	c.f.say("the kube-controller-manager of %s works", c.Name)
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
// certificate of the federation's CA, who holds no permission unless one
// is granted.
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
