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
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/test/framework"
)

// ChurnOptions say how exports churn.
type ChurnOptions struct {
	// Namespace holds the churned Services and exports in every member.
	Namespace string
	// Names is how many services each member churns: svc-0..svc-<Names-1>,
	// the same names in every member, so that imports merge exports of
	// several members.
	Names int
	// Interval is the time between two writes to one member; each member
	// churns on its own, so that a member that hangs stalls only its own.
	Interval time.Duration
	// RequestTimeout bounds each write (3s when unset): a hung member
	// answers nothing, and its writes are then of unknown outcome.
	RequestTimeout time.Duration
	// Seed makes the sequence of writes repeatable.
	Seed int64
}

// State is what the churn knows of one export.
type State int

const (
	// Unknown: the last write was not answered (the member died or hung
	// meanwhile), so it may or may not have been applied.
	Unknown State = iota
	// Present: the member acknowledged the Service and the export.
	Present
	// Absent: the member acknowledged their deletion (or never had them).
	Absent
)

func (s State) String() string {
	return [...]string{"unknown", "present", "absent"}[s]
}

// Churn creates and deletes ServiceExports, with their Services, at a
// steady rate in members, and records what each member acknowledged: the
// truth of the writes, against which WritesLost judges the end state.
type Churn struct {
	opts    ChurnOptions
	members []*framework.Cluster

	mu     sync.Mutex
	state  map[string][]State // by member, by name index
	acked  int
	failed int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ServiceName is the name of the churned service i.
func ServiceName(i int) string { return fmt.Sprintf("svc-%d", i) }

// StartChurn creates the namespace in every member and starts churning
// there until Stop. Every name starts Absent.
func StartChurn(ctx context.Context, members []*framework.Cluster, opts ChurnOptions) (*Churn, error) {
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 3 * time.Second
	}
	c := &Churn{opts: opts, members: members, state: map[string][]State{}}
	for _, m := range members {
		_, err := m.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("namespace %s in %s: %w", opts.Namespace, m.Name, err)
		}
		states := make([]State, opts.Names)
		for i := range states {
			states[i] = Absent
		}
		c.state[m.Name] = states
	}
	ctx, c.cancel = context.WithCancel(context.Background())
	for i, m := range members {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(ctx, m, rand.New(rand.NewSource(opts.Seed+int64(i))))
		}()
	}
	return c, nil
}

// Stop stops the churn and waits for the writes in flight.
func (c *Churn) Stop() {
	c.cancel()
	c.wg.Wait()
}

// Counts returns how many writes the members acknowledged and how many
// failed or went unanswered.
func (c *Churn) Counts() (acked, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked, c.failed
}

func (c *Churn) run(ctx context.Context, m *framework.Cluster, rng *rand.Rand) {
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := rng.Intn(c.opts.Names)
		c.mu.Lock()
		s := c.state[m.Name][i]
		c.mu.Unlock()
		reqCtx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		var next State
		var err error
		switch s {
		case Present:
			next, err = c.remove(reqCtx, m, ServiceName(i))
		case Absent:
			next, err = c.create(reqCtx, m, ServiceName(i))
		default:
			next, err = c.read(reqCtx, m, ServiceName(i))
		}
		cancel()
		if ctx.Err() != nil && err != nil {
			// Stopped mid-write: its outcome is unknown.
			next = Unknown
		}
		c.mu.Lock()
		c.state[m.Name][i] = next
		if err != nil {
			c.failed++
		} else if s != Unknown {
			c.acked++
		}
		c.mu.Unlock()
	}
}

// CreateExport creates in member m the Service namespace/name, with one
// port, 8080, and its ServiceExport at the path /<member>/<name>, as the
// churn does.
func CreateExport(ctx context.Context, m *framework.Cluster, namespace, name string) error {
	c := &Churn{opts: ChurnOptions{Namespace: namespace}}
	_, err := c.create(ctx, m, name)
	return err
}

// create creates the Service, then the export. A write the member refused
// leaves the state as the member says it is; one it did not answer leaves
// it Unknown.
func (c *Churn) create(ctx context.Context, m *framework.Cluster, name string) (State, error) {
	ns := c.opts.Namespace
	_, err := m.Kube().CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return unknownUnless(err, Absent), err
	}
	_, err = m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).Create(ctx, &v1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ServiceExportSpec{
			ServiceAccountName: "*",
			Rules:              []v1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/" + m.Name + "/" + name, PathType: v1alpha1.PathTypePrefix}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		// The Service exists and the export does not: the next write
		// reads and settles it.
		return Unknown, err
	}
	return Present, nil
}

// remove deletes the export, then the Service.
func (c *Churn) remove(ctx context.Context, m *framework.Cluster, name string) (State, error) {
	ns := c.opts.Namespace
	err := m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return unknownUnless(err, Present), err
	}
	err = m.Kube().CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return Unknown, err
	}
	return Absent, nil
}

// read settles an Unknown state from what the member holds: the export
// and its Service both present, or both absent; anything in between is
// completed towards absence.
func (c *Churn) read(ctx context.Context, m *framework.Cluster, name string) (State, error) {
	ns := c.opts.Namespace
	_, errE := m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).Get(ctx, name, metav1.GetOptions{})
	_, errS := m.Kube().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case errE == nil && errS == nil:
		return Present, nil
	case apierrors.IsNotFound(errE) && apierrors.IsNotFound(errS):
		return Absent, nil
	case errE != nil && !apierrors.IsNotFound(errE):
		return Unknown, errE
	case errS != nil && !apierrors.IsNotFound(errS):
		return Unknown, errS
	}
	return c.remove(ctx, m, name)
}

// unknownUnless returns was when the member answered err (it refused the
// write, which then did nothing), else Unknown.
func unknownUnless(err error, was State) State {
	var status apierrors.APIStatus
	if errors.As(err, &status) && !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) &&
		!apierrors.IsServiceUnavailable(err) && !apierrors.IsInternalError(err) {
		return was
	}
	return Unknown
}

// Truth returns, by member, the names whose state the members
// acknowledged, Present or Absent; Unknown ones are left out.
func (c *Churn) Truth() map[string]map[string]State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]State{}
	for m, states := range c.state {
		out[m] = map[string]State{}
		for i, s := range states {
			if s != Unknown {
				out[m][ServiceName(i)] = s
			}
		}
	}
	return out
}

// Settle reads the outcome of every Unknown write from the members, which
// must answer, so that the truth is whole. Call it after Stop.
func (c *Churn) Settle(ctx context.Context) error {
	for _, m := range c.members {
		for i := range c.opts.Names {
			c.mu.Lock()
			s := c.state[m.Name][i]
			c.mu.Unlock()
			if s != Unknown {
				continue
			}
			next, err := c.read(ctx, m, ServiceName(i))
			if err != nil {
				return fmt.Errorf("settling %s in %s: %w", ServiceName(i), m.Name, err)
			}
			c.mu.Lock()
			c.state[m.Name][i] = next
			c.mu.Unlock()
		}
	}
	return nil
}

// Lost lists the acknowledged writes whose effect is missing: an export a
// member acknowledged and does not hold, or holds after acknowledging its
// deletion; and, on the control plane, an import that lacks the endpoint
// of an export a serving member holds, or keeps that of one deleted.
// keys are the members' cluster keys, by member name; withdrawn members
// are checked in their own store only.
func (c *Churn) Lost(ctx context.Context, f *framework.Federation, keys map[string]string) ([]string, error) {
	var lost []string
	truth := c.Truth()
	ns := c.opts.Namespace
	endpoints := map[string]map[string]bool{} // by name, cluster keys
	imps, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().ServiceImports(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, imp := range imps.Items {
		endpoints[imp.Name] = map[string]bool{}
		for _, p := range imp.Spec.Ports {
			for _, e := range p.Endpoints {
				endpoints[imp.Name][e.ClusterKey] = true
			}
		}
	}
	for _, m := range c.members {
		list, err := m.Fedmesh().FlomeshV1alpha1().ServiceExports(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing the exports of %s: %w", m.Name, err)
		}
		held := map[string]bool{}
		for _, e := range list.Items {
			held[e.Name] = true
		}
		for name, s := range truth[m.Name] {
			want := s == Present
			if held[name] != want {
				lost = append(lost, fmt.Sprintf("%s: serviceexports %s/%s is %s in the member, acknowledged %s", m.Name, ns, name, presence(held[name]), s))
			}
			if key, ok := keys[m.Name]; ok && endpoints[name][key] != want {
				lost = append(lost, fmt.Sprintf("control-plane: serviceimports %s/%s: endpoint of %s is %s, its export was acknowledged %s",
					ns, name, m.Name, presence(endpoints[name][key]), s))
			}
		}
	}
	sort.Strings(lost)
	return lost, nil
}

func presence(b bool) string {
	if b {
		return "present"
	}
	return "absent"
}
