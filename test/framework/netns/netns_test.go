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

package netns

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePrefix(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{name: "nothing used", want: "198.18.0.0/30"},
		{name: "a default route is no collision", used: []netip.Prefix{p("0.0.0.0/0")}, want: "198.18.0.0/30"},
		{name: "the first /30 is taken", used: []netip.Prefix{p("198.18.0.1/30").Masked(), p("198.18.0.1/32")}, want: "198.18.0.4/30"},
		{name: "an address inside a /30", used: []netip.Prefix{p("198.18.0.6/32")}, want: "198.18.0.0/30"},
		{name: "a wider route covers several", used: []netip.Prefix{p("198.18.0.0/29")}, want: "198.18.0.8/30"},
		{name: "a route outside the range", used: []netip.Prefix{p("192.0.2.0/24"), p("127.0.0.0/8")}, want: "198.18.0.0/30"},
		{name: "the whole range is routed elsewhere", used: []netip.Prefix{p("198.16.0.0/12")}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := freePrefix(Range, tc.used)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %s, want none", got)
				}
				return
			}
			if !ok || got.String() != tc.want {
				t.Fatalf("got %s (%v), want %s", got, ok, tc.want)
			}
		})
	}
}

func TestOwnerOf(t *testing.T) {
	tests := []struct {
		rest, sep string
		pid       int
		ok        bool
	}{
		{"123-4", "-", 123, true},
		{"123n4", "n", 123, true},
		{"123", "-", 0, false},
		{"x-4", "-", 0, false},
		{"123-x", "-", 0, false},
		{"-4", "-", 0, false},
		{"0-1", "-", 0, false},
	}
	for _, tc := range tests {
		pid, ok := ownerOf(tc.rest, tc.sep)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerOf(%q, %q) = %d, %v; want %d, %v", tc.rest, tc.sep, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.4/30": "198.18.0.4/30",
		"198.18.0.5/30": "198.18.0.4/30",
		"10.0.0.1":      "10.0.0.1/32",
		"default":       "",
	} {
		got, ok := parsePrefix(in)
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("parsePrefix(%q) = %s, %v; want %q", in, got, ok, want)
		}
	}
}

// needRoot skips a test that makes network namespaces where none can be
// made, saying why.
func needRoot(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
}

func TestBackend(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := StartBackend(ctx, BackendOptions{Message: Message("cluster-1")})
	if err != nil {
		t.Fatal(err)
	}
	ns := b.Namespace()
	t.Cleanup(func() { b.Close() })
	if !Range.Contains(b.Addr().Addr()) || !ns.Prefix.Contains(ns.HostIP) || ns.Prefix.Bits() != 30 {
		t.Fatalf("address %s, host %s, prefix %s: want a /30 of %s", b.Addr(), ns.HostIP, ns.Prefix, Range)
	}
	// A fresh transport per request: a kept-alive connection would hide
	// what a new one meets.
	get := func() (int, string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(b.URL())
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if code, body, err := get(); err != nil || code != 200 || body != "Hi, I am from cluster-1 and controlled by mesh!\n" {
		t.Fatalf("GET %s: %d %q %v", b.URL(), code, body, err)
	}

	b.SetStatus(http.StatusServiceUnavailable)
	if code, _, err := get(); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("failing backend: %d %v, want 503", code, err)
	}
	b.SetStatus(0)

	b.Kill()
	if _, _, err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("killed backend: %v, want connection refused", err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(); err != nil || code != 200 {
		t.Fatalf("restarted backend: %d %v", code, err)
	}
	if n := b.Requests(); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}

	// Two namespaces never share a /30.
	other, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if other.Prefix.Overlaps(ns.Prefix) {
		t.Errorf("%s overlaps %s", other.Prefix, ns.Prefix)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, ns.Name)); !os.IsNotExist(err) {
		t.Errorf("namespace %s is still there: %v", ns.Name, err)
	}
	if linkExists(ctx, ns.hostLink) {
		t.Errorf("link %s is still there", ns.hostLink)
	}
}

func TestRemoveStale(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A namespace named after a pid that cannot be running: above Linux's
	// pid_max limit of 2^22.
	name := Prefix + "4194305-1"
	if err := ip(ctx, "netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ip(context.Background(), "netns", "delete", name) })
	mine, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	if err := removeStale(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := ipOutput(ctx, "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("stale namespace %s is still there", name)
	}
	if !strings.Contains(string(out), mine.Name) {
		t.Errorf("live namespace %s was removed", mine.Name)
	}
}

// threads maps each thread of this process to its network namespace.
func threads(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		if ns, err := os.Readlink(p); err == nil {
			out[strings.Split(p, "/")[4]] = ns
		}
	}
	return out
}

// TestListenKeepsThreads checks that Listen leaves every thread of the
// process alive and in the host's namespace. A thread that ends kills the
// processes it started with a Pdeathsig, which is how the framework
// starts its servers; one left in the namespace would send the process's
// loopback traffic there.
func TestListenKeepsThreads(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	before := threads(t)
	for range 20 {
		ln, err := ns.Listen(0)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	after := threads(t)
	for id := range before {
		if _, ok := after[id]; !ok {
			t.Errorf("thread %s ended", id)
		}
	}
	for id, n := range after {
		if n != home {
			t.Errorf("thread %s is in %s, not the host's %s", id, n, home)
		}
	}
}
