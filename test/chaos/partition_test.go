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

package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
	"github.com/fedmesh/fedmesh/test/framework/netns"
)

// forward accepts connections on ln and relays each to target, until ln
// is closed; it returns a function that closes ln and every relayed
// connection.
func forward(ln net.Listener, target string) func() {
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// hostLink returns the name of the host's interface that holds addr.
func hostLink(ctx context.Context, addr string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "addr", "show", "to", addr).Output()
	if err != nil {
		return "", fmt.Errorf("ip -o addr show to %s: %w", addr, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		return "", fmt.Errorf("no interface holds %s", addr)
	}
	return fields[1], nil
}

func setLink(ctx context.Context, link, state string) error {
	if out, err := exec.CommandContext(ctx, "ip", "link", "set", link, state).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s %s: %w: %s", link, state, err, out)
	}
	return nil
}

// TestMemberPartition cuts a member off from the control plane: fedmesh
// reaches the member's kube-apiserver only through a network namespace
// the test makes (a veth pair with its own /30; inside, a relay to the
// kube-apiserver), and the fault brings the host's side of the pair down.
// The member itself keeps running, and its users keep writing to it: it
// is fedmesh that cannot see it, as in a partition of the network.
func TestMemberPartition(t *testing.T) {
	cfg := Current()
	FullOnly(t, cfg)
	if err := netns.Available(); err != nil {
		t.Skipf("cutting a member off needs a network namespace: %v", err)
	}
	var link string
	runMemberFault(t, memberFault{
		name: "member cut off (network namespace, link down)",
		setup: func(t *testing.T, ctx context.Context, f *framework.Federation) {
			ns, err := netns.New(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = ns.Close() })
			ln, err := ns.Listen(0)
			require.NoError(t, err)
			victim := f.Members[len(f.Members)-1]
			target := strings.TrimPrefix(victim.Server(), "https://")
			stop := forward(ln, target)
			t.Cleanup(stop)
			link, err = hostLink(ctx, ns.HostIP.String())
			require.NoError(t, err)
			t.Logf("%s is reached through %s (namespace %s, host link %s)", victim.Name, ln.Addr(), ns.Name, link)

			// Its Cluster names the address in the namespace; the
			// serving certificate is verified for localhost.
			kc, err := victim.Kubeconfig()
			require.NoError(t, err)
			cfg, err := clientcmd.Load(kc)
			require.NoError(t, err)
			for _, c := range cfg.Clusters {
				c.Server = "https://" + ln.Addr().String()
				c.TLSServerName = "localhost"
			}
			kc, err = clientcmd.Write(*cfg)
			require.NoError(t, err)
			for i, m := range f.Members {
				k := kc
				if m != victim {
					k, err = m.Kubeconfig()
					require.NoError(t, err)
				}
				_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
					ObjectMeta: metav1.ObjectMeta{Name: m.Name},
					Spec:       v1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", GatewayPort: int32(81 + i), Kubeconfig: string(k)},
				}, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			for _, m := range f.Members {
				_, err := WaitCluster(ctx, f, m.Name, 60*time.Second, IsReady(metav1.ConditionTrue, ""))
				require.NoError(t, err)
			}
		},
		inflict: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return setLink(ctx, link, "down")
		},
		end: func(t *testing.T, ctx context.Context, f *framework.Federation, victim *framework.Cluster) error {
			return setLink(ctx, link, "up")
		},
		detectWithin: 10 * time.Second,
	})
}
