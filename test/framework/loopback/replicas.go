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

	"k8s.io/client-go/rest"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
)

// FedmeshServer is one fedmesh-apiserver process of a federation: the
// only one, or a replica behind the federation's Balancer.
type FedmeshServer struct {
	// Name is the process's name: fedmesh-apiserver for the first,
	// fedmesh-apiserver-<i> for the others.
	Name string

	f    *Federation
	proc *process
	port int
}

// fedmeshPorts picks the ports of the fedmesh-apiserver replicas and the
// port the APIService names: the only replica's, or, with several, that
// of a balancer it starts in front of them.
func (f *Federation) fedmeshPorts() (replicas []int, api int, err error) {
	n := max(f.opts.FedmeshReplicas, 1)
	api = f.opts.Ports.Fedmesh
	if n == 1 {
		if api == 0 {
			if api, err = freePort(); err != nil {
				return nil, 0, err
			}
		}
		return []int{api}, api, nil
	}
	backends := make([]string, n)
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, 0, err
		}
		replicas = append(replicas, port)
		backends[i] = hostPort(port)
	}
	if f.balancer, err = NewBalancer(api, backends...); err != nil {
		return nil, 0, fmt.Errorf("balancer for fedmesh-apiserver: %w", err)
	}
	f.say("a balancer on %s forwards to fedmesh-apiserver's %d replicas on %v", f.balancer.Addr(), n, backends)
	return replicas, f.balancer.Port(), nil
}

// FedmeshServers are the federation's fedmesh-apiserver processes, in the
// order of the Balancer's backends.
func (f *Federation) FedmeshServers() []*FedmeshServer { return f.fedmeshServers }

// Balancer is the balancer in front of fedmesh-apiserver's replicas, or
// nil when there is one replica.
func (f *Federation) Balancer() *Balancer { return f.balancer }

// Start starts the replica again, after Kill or Stop, on the same port
// and with the same flags, and waits until it is ready; a lone replica
// also waits until the aggregator finds the APIService Available again.
func (s *FedmeshServer) Start(ctx context.Context) error {
	if err := s.proc.start(); err != nil {
		return err
	}
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	if len(s.f.fedmeshServers) > 1 {
		return nil
	}
	return s.f.waitFor(ctx, s.proc, "APIService "+APIServiceName, s.f.apiServiceAvailable)
}

// waitReady waits until the replica answers its own /readyz.
func (s *FedmeshServer) waitReady(ctx context.Context) error {
	return s.f.waitFor(ctx, s.proc, s.Name, func(ctx context.Context) error {
		client, err := rest.UnversionedRESTClientFor(withCodecs(s.Config()))
		if err != nil {
			return err
		}
		return client.Get().AbsPath("/readyz").Do(ctx).Error()
	})
}

// Kill kills the replica as a crash would (SIGKILL); it stays down until
// Start.
func (s *FedmeshServer) Kill() { s.proc.kill() }

// Stop stops the replica gently (SIGTERM).
func (s *FedmeshServer) Stop() { s.proc.stop() }

// PID is the process id of the running replica, or 0.
func (s *FedmeshServer) PID() int { return s.proc.pid() }

// Port is the port the replica listens on.
func (s *FedmeshServer) Port() int { return s.port }

// Log is the path of the replica's log.
func (s *FedmeshServer) Log() string { return s.proc.logPath }

// Config is an admin client configuration of this replica itself, not
// through the aggregator or the balancer: to read what one replica
// serves.
func (s *FedmeshServer) Config() *rest.Config {
	cfg := s.f.ControlPlane.Config()
	cfg.Host = "https://" + hostPort(s.port)
	return cfg
}

// Fedmesh is an admin clientset of this replica itself.
func (s *FedmeshServer) Fedmesh() versioned.Interface {
	return versioned.NewForConfigOrDie(s.Config())
}
