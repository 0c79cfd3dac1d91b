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

// Package netns runs the walkthrough's backends where a member cluster
// can reach them as Kubernetes reaches a Pod: at an address an
// EndpointSlice accepts. EndpointSlices refuse loopback addresses, and
// nothing fedmesh's tests start may send traffic anywhere but loopback
// and the addresses of network namespaces they create themselves (not
// even the machine's own address). So each backend gets a network
// namespace of its own, joined to the host's by a veth pair with a /30 of
// 198.18.0.0/15 (RFC 2544's benchmarking range, which no real network
// routes): the host's side has .1, the namespace's side .2, and the
// backend listens on .2, the address its EndpointSlice names.
//
// The servers run in this process: a goroutine locked to its OS thread
// joins the namespace with setns, opens the listening socket and ends,
// taking the thread with it (a thread that changed namespace is never
// handed back to the Go scheduler). The socket stays in the namespace it
// was made in, so the server itself runs on any goroutine.
//
// It needs root and the ip command of iproute2. Without either, New and
// StartBackend return an error that wraps ErrNeedRoot, which tests turn
// into a skip and local-up into a message. It imports no testing package,
// as hack/local-up and hack/demo use it.
//
// Every namespace is named fedmesh-<pid>-<n> after the process that made
// it. Close removes it; one left by a process that was killed is removed
// by the next New of any process, once that pid is gone.
package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNeedRoot is wrapped by every error that says this machine or user
// cannot make network namespaces.
var ErrNeedRoot = errors.New("the demo's backends need root: network namespaces")

const (
	// Prefix starts the name of every namespace this package makes.
	Prefix = "fedmesh-"
	// linkPrefix starts the host's side of every veth pair; interface
	// names are at most 15 bytes, so "fm<pid>n<n>".
	linkPrefix = "fm"
	// namespaceLink is the name of the namespace's side of the pair.
	namespaceLink = "eth0"
	// lockFile serializes the address allocation of every process on the
	// machine: two tests that start at once must not pick the same /30.
	lockFile = "/run/fedmesh-netns.lock"
	// netnsDir is where ip netns keeps its named namespaces.
	netnsDir = "/run/netns"
)

// sysSetns is setns(2)'s number, which package syscall does not define
// for every architecture.
var sysSetns = map[string]uintptr{
	"amd64": 308, "arm64": 268, "riscv64": 268, "loong64": 268,
	"386": 346, "arm": 375, "ppc64le": 350, "s390x": 339,
}[runtime.GOARCH]

// Range is the address range namespaces get their /30s from.
var Range = netip.MustParsePrefix("198.18.0.0/15")

// Namespace is a network namespace joined to the host's by a veth pair.
type Namespace struct {
	// Name is the namespace's name, as ip netns list shows it.
	Name string
	// HostIP is the host's side of the veth pair, IP the namespace's.
	HostIP, IP netip.Addr
	// Prefix is the pair's /30.
	Prefix netip.Prefix

	hostLink string
	closed   atomic.Bool
}

var (
	seq          atomic.Int64
	cleanupOnce  sync.Once
	availability struct {
		once sync.Once
		err  error
	}
)

// Available tells whether New can work here: nil, or an error that wraps
// ErrNeedRoot and says what is missing.
func Available() error {
	availability.once.Do(func() {
		switch {
		case runtime.GOOS != "linux":
			availability.err = fmt.Errorf("%w (Linux only)", ErrNeedRoot)
		case os.Geteuid() != 0:
			availability.err = fmt.Errorf("%w; run as root", ErrNeedRoot)
		default:
			if _, err := exec.LookPath("ip"); err != nil {
				availability.err = fmt.Errorf("%w and the ip command of iproute2 (apt-get install iproute2): %v", ErrNeedRoot, err)
			}
		}
	})
	return availability.err
}

// New makes a network namespace with a veth pair to the host's, both
// sides and the namespace's loopback up. The caller must Close it.
func New(ctx context.Context) (*Namespace, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cleanupOnce.Do(func() {
		// Best effort: a stale namespace costs only an address.
		_ = removeStale(ctx)
	})
	used, err := usedPrefixes(ctx)
	if err != nil {
		return nil, err
	}
	p, ok := freePrefix(Range, used)
	if !ok {
		return nil, fmt.Errorf("no free /30 left in %s", Range)
	}
	n := seq.Add(1)
	ns := &Namespace{
		Name:     fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), n),
		Prefix:   p,
		HostIP:   p.Addr().Next(),
		IP:       p.Addr().Next().Next(),
		hostLink: fmt.Sprintf("%s%dn%d", linkPrefix, os.Getpid(), n),
	}
	if len(ns.hostLink) > 15 {
		return nil, fmt.Errorf("interface name %q is too long", ns.hostLink)
	}
	steps := [][]string{
		{"netns", "add", ns.Name},
		{"link", "add", ns.hostLink, "type", "veth", "peer", "name", namespaceLink, "netns", ns.Name},
		{"addr", "add", prefixOf(ns.HostIP, p), "dev", ns.hostLink},
		{"link", "set", ns.hostLink, "up"},
		{"-n", ns.Name, "link", "set", "lo", "up"},
		{"-n", ns.Name, "addr", "add", prefixOf(ns.IP, p), "dev", namespaceLink},
		{"-n", ns.Name, "link", "set", namespaceLink, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			ns.remove()
			return nil, err
		}
	}
	return ns, nil
}

// Listen opens a TCP listener on the namespace's address and port (0
// picks one). The socket lives in the namespace, whichever goroutine
// serves it.
func (ns *Namespace) Listen(port int) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	if sysSetns == 0 {
		return nil, fmt.Errorf("%w (no setns number known for %s)", ErrNeedRoot, runtime.GOARCH)
	}
	// The namespace to return to is the process's own: its main thread's.
	home, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	defer home.Close()
	target, err := os.Open(filepath.Join(netnsDir, ns.Name))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	ch := make(chan result, 1)
	go func() {
		// The thread joins the namespace for the socket call only and is
		// then moved back. Were it left there, the runtime would have to
		// end it with this goroutine, and a thread that ends sends the
		// Pdeathsig of every process it started (prctl(2) ties the signal
		// to the thread, not the process): the servers of the test that
		// happened to be started from it were killed without a word.
		runtime.LockOSThread()
		if errno := setns(target); errno != 0 {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", ns.Name, errno)}
			return
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ns.IP, uint16(port)).String())
		if errno := setns(home); errno != 0 {
			// Still in the namespace: the thread stays locked and ends
			// with this goroutine, which is the lesser harm.
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: fmt.Errorf("setns back from %s: %w", ns.Name, errno)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// setns moves the calling thread into the network namespace of f.
func setns(f *os.File) syscall.Errno {
	_, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0)
	return errno
}

// Close removes the namespace and, with it, the veth pair and whatever
// listens in it.
func (ns *Namespace) Close() error {
	if ns.closed.Swap(true) {
		return nil
	}
	return ns.remove()
}

func (ns *Namespace) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Deleting the namespace deletes its side of the pair, and so the pair.
	err := ip(ctx, "netns", "delete", ns.Name)
	if linkExists(ctx, ns.hostLink) {
		_ = ip(ctx, "link", "delete", ns.hostLink)
	}
	return err
}

// removeStale removes the namespaces and links of processes that are gone.
func removeStale(ctx context.Context) error {
	out, err := ipOutput(ctx, "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		if pid, ok := ownerOf(strings.TrimPrefix(f[0], Prefix), "-"); ok && !alive(pid) {
			errs = append(errs, ip(ctx, "netns", "delete", f[0]))
		}
	}
	links, err := ipOutput(ctx, "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(links), "\n") {
		// "7: fm123n1@if2: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if !strings.HasPrefix(name, linkPrefix) {
			continue
		}
		if pid, ok := ownerOf(strings.TrimPrefix(name, linkPrefix), "n"); ok && !alive(pid) {
			errs = append(errs, ip(ctx, "link", "delete", name))
		}
	}
	return errors.Join(errs...)
}

// ownerOf reads the pid before sep in rest, as in "123-4" or "123n4".
func ownerOf(rest, sep string) (int, bool) {
	p, n, ok := strings.Cut(rest, sep)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, false
	}
	if _, err := strconv.Atoi(n); err != nil {
		return 0, false
	}
	return pid, true
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// usedPrefixes are the host's routes and addresses, which a new /30 must
// not overlap.
func usedPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var used []netip.Prefix
	routes, err := ipOutput(ctx, "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(routes), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if p, ok := parsePrefix(dst); ok {
			used = append(used, p)
		}
	}
	addrs, err := ipOutput(ctx, "-4", "-o", "addr", "show")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(addrs))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, ok := parsePrefix(f[i+1]); ok {
					used = append(used, p)
				}
			}
		}
	}
	return used, nil
}

// parsePrefix reads "a.b.c.d/n" or "a.b.c.d" (a /32); "default" is not a
// collision, as a more specific route wins over it.
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// freePrefix returns the first /30 of r that overlaps none of used.
func freePrefix(r netip.Prefix, used []netip.Prefix) (netip.Prefix, bool) {
	r = r.Masked()
	for a := r.Addr(); r.Contains(a); {
		p := netip.PrefixFrom(a, 30)
		free := true
		for _, u := range used {
			if u.Bits() > 0 && u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, true
		}
		for range 4 {
			a = a.Next()
		}
	}
	return netip.Prefix{}, false
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

func linkExists(ctx context.Context, name string) bool {
	return ip(ctx, "link", "show", name) == nil
}

func ip(ctx context.Context, args ...string) error {
	_, err := ipOutput(ctx, args...)
	return err
}

func ipOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// lock takes the machine-wide lock of address allocation.
func lock() (func(), error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
