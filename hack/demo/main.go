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
// Command demo replays the Flomesh multi-cluster walkthrough against the
// federation of a running make local-up, step by step, and prints each
// curl result of a client in cluster-2, sent through its fedmesh-gateway's
// egress proxy, beside the walkthrough's:
//
//  1. httpbin is exported from cluster-1 and cluster-3, with no policy
//     (Locality): the request fails, since cluster-2 has no httpbin;
//  2. FailOver to cluster-1 and cluster-3: both serve;
//  3. httpbin is deployed in cluster-2 too: cluster-2 serves every request;
//  4. ActiveActive: cluster-1, cluster-2 and cluster-3 serve.
//
// It applies the walkthrough's manifests (artifacts/examples) unchanged,
// with the kubectl of _output/bin, substituting ${CLUSTER_NAME} as the
// walkthrough does. local-up runs httpbin of cluster-1 and cluster-3 (as
// root); the demo runs cluster-2's, in a network namespace of its own, so
// it needs root too. After each change it sends rounds of requests until
// one round is the walkthrough's result, or a minute passes, and says how
// long that took.
//
// It first undoes what an earlier run did (the policy, httpbin of
// cluster-2), so it can be run again; at the end it removes httpbin of
// cluster-2, whose backend ends with it, and leaves the exports and the
// ActiveActive policy. -hold keeps it running, with cluster-2's httpbin,
// until Ctrl-C.
//
// Usage:
//
//	make local-up   # in one shell, as root
//	make demo       # in another
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fedmesh/fedmesh/test/framework/loopback"
	"github.com/fedmesh/fedmesh/test/framework/netns"
	"github.com/fedmesh/fedmesh/test/framework/walkthrough"
)

// round is the number of requests of one round.
const round = 6

func main() {
	hold := flag.Bool("hold", false, "at the end, keep cluster-2's httpbin running until interrupted")
	timeout := flag.Duration("timeout", time.Minute, "how long to wait, after a change, for the walkthrough's result")
	flag.Parse()
	os.Exit(run(*hold, *timeout))
}

func run(hold bool, timeout time.Duration) int {
	root, err := loopback.RepoRoot()
	if err != nil {
		return fail(err)
	}
	work := filepath.Join(root, "_output", "local-up")
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	env := &walkthrough.Env{
		Root:         root,
		Kubectl:      filepath.Join(root, "_output", "bin", "kubectl"),
		ControlPlane: filepath.Join(work, "control-plane.kubeconfig"),
		Members:      map[string]string{},
		Egress:       map[string]string{},
		Show:         rel,
		Log:          func(format string, args ...any) { fmt.Printf("  "+format+"\n", args...) },
	}
	gateways, err := readEnv(filepath.Join(work, "gateways.env"))
	if err != nil {
		return fail(fmt.Errorf("%w\nIs make local-up running? Start it (as root) in another shell, then run make demo", err))
	}
	for _, m := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		env.Members[m] = filepath.Join(work, m+".kubeconfig")
		v := strings.ToUpper(strings.ReplaceAll(m, "-", "_")) + "_EGRESS"
		if env.Egress[m] = gateways[v]; env.Egress[m] == "" {
			return fail(fmt.Errorf("%s has no %s", rel(filepath.Join(work, "gateways.env")), v))
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	defer func() {
		// Its backend ends with this process: cluster-2 must not keep an
		// EndpointSlice of an address nothing answers.
		cleanup, done := context.WithTimeout(context.Background(), 30*time.Second)
		defer done()
		if err := env.RemoveHTTPBin(cleanup, walkthrough.Client); err != nil {
			fmt.Fprintf(os.Stderr, "!!! removing httpbin of cluster-2: %v\n", err)
		}
		env.Close()
	}()

	fmt.Printf("The client runs in %s; its requests go through its fedmesh-gateway's egress proxy:\n"+
		"  curl -x http://%s %s   (CLUSTER_2_EGRESS of %s)\n\n",
		walkthrough.Client, env.Egress[walkthrough.Client], walkthrough.URL, rel(filepath.Join(work, "gateways.env")))
	if err := netns.Available(); err != nil {
		return fail(fmt.Errorf("%w: the demo runs httpbin of cluster-2 in one", err))
	}
	if err := env.Reset(ctx); err != nil {
		return fail(fmt.Errorf("undoing an earlier run: %w", err))
	}
	if err := hasHTTPBin(ctx, env); err != nil {
		return fail(err)
	}

	failed := 0
	for i, step := range walkthrough.Steps() {
		fmt.Printf("== %d. %s\n", i+1, step.Title)
		if err := step.Do(ctx, env); err != nil {
			return fail(err)
		}
		r := env.Await(ctx, step.Expect, round, timeout)
		fmt.Printf("  $ curl -x http://$CLUSTER_2_EGRESS %s   # %d times\n", walkthrough.URL, round)
		fmt.Printf("  %-50s %s\n", "the walkthrough", "fedmesh")
		for j, res := range r.Results {
			fmt.Printf("  %-50s %s\n", step.Walkthrough[j%len(step.Walkthrough)], res)
		}
		switch {
		case r.OK && len(step.Expect.Serving) == 0:
			fmt.Printf("  as the walkthrough: no route, and the 503 says why (round %d of %d requests, %.1fs after the commands returned)\n",
				r.Rounds, round, r.Elapsed.Seconds())
		case r.OK:
			fmt.Printf("  as the walkthrough, and %s named the cluster that answered (round %d of %d requests, %.1fs after the commands returned)\n",
				walkthrough.ServedByHeader, r.Rounds, round, r.Elapsed.Seconds())
		default:
			failed++
			fmt.Printf("  NOT as the walkthrough after %.1fs: %s\n", r.Elapsed.Seconds(), r.Why)
		}
		if len(step.Expect.Serving) == 0 && len(r.Results) > 0 {
			fmt.Println("  the 503's body, why there is no route:")
			for _, line := range strings.Split(strings.TrimRight(r.Results[0].Body, "\n"), "\n") {
				fmt.Printf("  | %s\n", line)
			}
		}
		fmt.Println()
	}
	if hold {
		fmt.Println("cluster-2's httpbin keeps running; press Ctrl-C to remove it")
		<-ctx.Done()
	}
	if failed > 0 {
		fmt.Printf("%d step(s) differ from the walkthrough\n", failed)
		return 1
	}
	fmt.Println("every step as the walkthrough; httpbin of cluster-2 is removed, the exports and the ActiveActive policy stay")
	return 0
}

// hasHTTPBin checks that local-up runs httpbin in cluster-1 and cluster-3,
// which it does as root only: each has the EndpointSlice of its backend,
// and the backend answers there.
func hasHTTPBin(ctx context.Context, env *walkthrough.Env) error {
	for _, m := range []string{"cluster-1", "cluster-3"} {
		addrs, err := env.Published(ctx, m)
		if err == nil {
			err = answers(ctx, addrs[0], m)
		}
		if err != nil {
			return fmt.Errorf("httpbin of %s: %v\nmake local-up runs the walkthrough's httpbin only as root: %w", m, err, netns.ErrNeedRoot)
		}
	}
	return nil
}

// answers sends a request straight to a backend, at an address of a
// network namespace that local-up made.
func answers(ctx context.Context, addr, member string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if string(body) != netns.Message(member) {
		return fmt.Errorf("%s answers %d %q", addr, resp.StatusCode, body)
	}
	return nil
}

// readEnv reads the NAME=VALUE lines of a file such as gateways.env.
func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not NAME=VALUE: %q", path, line)
		}
		out[k] = v
	}
	return out, sc.Err()
}

func fail(err error) int {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "interrupted")
		return 1
	}
	fmt.Fprintf(os.Stderr, "!!! %v\n", err)
	return 1
}
