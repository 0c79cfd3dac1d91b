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

// Faults of a cluster's kube-apiserver and of etcd, for the fault suite
// (test/chaos): a crash and a restart on the same port and data, and a
// hang (SIGSTOP) and its end (SIGCONT).

import (
	"context"
	"fmt"
	"syscall"
)

// KillAPIServer kills the cluster's kube-apiserver with SIGKILL, as a
// crash would; its kube-controller-manager keeps running and retrying.
func (c *Cluster) KillAPIServer() { c.proc.kill() }

// RestartAPIServer starts the cluster's kube-apiserver again after
// KillAPIServer, on the same port with the same etcd prefix, so its
// kubeconfigs and objects stay valid, and waits until it is ready.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if err := c.proc.start(); err != nil {
		return err
	}
	if err := c.f.waitFor(ctx, c.proc, c.Name+"'s kube-apiserver", func(ctx context.Context) error {
		return c.get(ctx, "/readyz")
	}); err != nil {
		return err
	}
	c.f.say("%s is ready again on %s", c.Name, c.Server())
	return nil
}

// PauseAPIServer stops the cluster's kube-apiserver with SIGSTOP: it
// keeps its connections and its port, and answers nothing, as a hung
// server does, until ResumeAPIServer.
func (c *Cluster) PauseAPIServer() error { return signal(c.proc, syscall.SIGSTOP) }

// ResumeAPIServer continues a kube-apiserver that PauseAPIServer stopped.
func (c *Cluster) ResumeAPIServer() error { return signal(c.proc, syscall.SIGCONT) }

// APIServerPID is the process id of the cluster's running kube-apiserver,
// or 0.
func (c *Cluster) APIServerPID() int { return c.proc.pid() }

// KillEtcd kills etcd with SIGKILL, as a crash would.
func (f *Federation) KillEtcd() { f.etcd.kill() }

// RestartEtcd starts etcd again after KillEtcd, on the same ports and data
// directory, and waits until it is healthy.
func (f *Federation) RestartEtcd(ctx context.Context) error {
	if err := f.etcd.start(); err != nil {
		return err
	}
	if err := f.waitFor(ctx, f.etcd, "etcd", func(ctx context.Context) error {
		return httpGet(ctx, f.etcdURL+"/health")
	}); err != nil {
		return err
	}
	f.say("etcd is healthy again on %s", f.etcdURL)
	return nil
}

// EtcdPID is the process id of the running etcd, or 0.
func (f *Federation) EtcdPID() int { return f.etcd.pid() }

func signal(p *process, sig syscall.Signal) error {
	pid := p.pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.name)
	}
	return syscall.Kill(pid, sig)
}
