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
package fedmesh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/routing"
)

// kubectl fedmesh status service NAMESPACE/NAME --from CLUSTER prints the
// route a consumer gets, computed by pkg/routing as fedmesh-gateway
// computes it, from the control plane's ServiceImport, policy and Clusters
// (their Ready conditions are the health of each cluster), and the
// consumer's own endpoints. Those are read from the member, as the gateway
// reads them (its Service and EndpointSlices, through
// routing.LocalBackends), when the member flags give access to it; else
// the consumer's own export stands for them, as in the policy's status, and
// the output says so.

// Where a route's local endpoints come from.
const (
	// localFromMember: the member's Service and EndpointSlices were read.
	localFromMember = "Member"
	// localFromExport: the consumer's own export stands for them.
	localFromExport = "OwnExport"
)

// maxEndpointSlices bounds what is read of a member's EndpointSlices of one
// Service: a Service has one slice per hundred endpoints, and a member
// answering more than this is not read further.
const maxEndpointSlices = 1000

// routeView is what status service --from prints, and its JSON and YAML.
type routeView struct {
	Service string `json:"service"`
	// Consumer is the key of the cluster the requests start in.
	Consumer string `json:"consumer"`
	// LocalEndpoints says where the consumer's own endpoints were taken
	// from: Member or OwnExport.
	LocalEndpoints string `json:"localEndpoints"`
	// Note explains LocalEndpoints.
	Note   string      `json:"note"`
	Routes []portRoute `json:"routes"`
}

// portRoute is the route of one port.
type portRoute struct {
	Port      int32              `json:"port"`
	LbType    string             `json:"lbType"`
	Tiers     [][]destinationOut `json:"tiers"`
	Decisions []decisionOut      `json:"decisions"`
}

type destinationOut struct {
	Cluster  string       `json:"cluster"`
	Local    bool         `json:"local,omitempty"`
	Weight   int32        `json:"weight"`
	Backends []backendOut `json:"backends"`
}

type backendOut struct {
	Host string `json:"host"`
	Port int32  `json:"port"`
	Path string `json:"path,omitempty"`
}

type decisionOut struct {
	Cluster string `json:"cluster"`
	// Tier is the index of the cluster's tier, or -1 when it is out.
	Tier    int    `json:"tier"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func viewOf(port int32, r routing.Route) portRoute {
	out := portRoute{Port: port, LbType: string(r.LbType), Tiers: [][]destinationOut{}, Decisions: []decisionOut{}}
	for _, t := range r.Tiers {
		tier := make([]destinationOut, 0, len(t))
		for _, d := range t {
			dest := destinationOut{Cluster: d.Cluster, Local: d.Local, Weight: d.Weight, Backends: []backendOut{}}
			for _, b := range d.Backends {
				dest.Backends = append(dest.Backends, backendOut{Host: b.Host, Port: b.Port, Path: b.Path})
			}
			tier = append(tier, dest)
		}
		out.Tiers = append(out.Tiers, tier)
	}
	for _, d := range r.Decisions {
		out.Decisions = append(out.Decisions, decisionOut{Cluster: d.Cluster, Tier: d.Tier, Reason: string(d.Reason), Message: d.Message})
	}
	return out
}

// localService is a consumer's own instance of the service, as read from
// the member.
type localService struct {
	// where names the member, for the output.
	where string
	// service is nil when the member has no such Service.
	service *corev1.Service
	slices  []*discoveryv1.EndpointSlice
}

// routeRequest is what computeRoutes decides from.
type routeRequest struct {
	Namespace, Name string
	Consumer        *v1alpha1.Cluster
	Clusters        []v1alpha1.Cluster
	// Import and Policy are nil when there is none.
	Import *v1alpha1.ServiceImport
	Policy *v1alpha1.GlobalTrafficPolicy
	// Local is nil when the member was not read.
	Local *localService
	// Port is the one port to show, or 0 for every port.
	Port int32
}

// computeRoutes returns the routes of the consumer to each port of the
// service: the import's ports and, when the member was read, its
// Service's TCP ports.
func computeRoutes(req routeRequest) (*routeView, error) {
	consumer := keyOf(req.Consumer.Name, req.Consumer.Spec)
	view := &routeView{Service: req.Namespace + "/" + req.Name, Consumer: consumer, Routes: []portRoute{}}

	health := map[string]routing.Health{}
	for i := range req.Clusters {
		c := &req.Clusters[i]
		// The message may quote the member: it is escaped when printed,
		// as everything is.
		h := routing.HealthOf(c)
		health[keyOf(c.Name, c.Spec)] = h
	}

	var ports []int32
	if req.Import != nil {
		for _, p := range req.Import.Spec.Ports {
			ports = append(ports, p.Port)
		}
	}
	if req.Local != nil {
		view.LocalEndpoints = localFromMember
		if req.Local.service == nil {
			view.Note = fmt.Sprintf("read from the member at %s: it has no Service %s", req.Local.where, view.Service)
		} else {
			view.Note = fmt.Sprintf("read from the member at %s: its Service and EndpointSlices", req.Local.where)
			for _, p := range req.Local.service.Spec.Ports {
				if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
					ports = append(ports, p.Port)
				}
			}
		}
	} else {
		view.LocalEndpoints = localFromExport
		if len(exportedPorts(req.Import, consumer)) > 0 {
			view.Note = fmt.Sprintf("unknown: no access to the member was given (--member-kubeconfig, --member-context); %s exports the service, and its export stands for its local endpoints, as in the policy's status", consumer)
		} else {
			view.Note = fmt.Sprintf("unknown: no access to the member was given (--member-kubeconfig, --member-context); %s does not export the service, so it is taken to have no local endpoints, as in the policy's status", consumer)
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if req.Port != 0 {
		if !slices.Contains(ports, req.Port) {
			return nil, fmt.Errorf("%s has no port %d (ports: %s)", view.Service, req.Port, portList(ports))
		}
		ports = []int32{req.Port}
	}

	var spec *v1alpha1.GlobalTrafficPolicySpec
	if req.Policy != nil {
		spec = &req.Policy.Spec
	}
	for _, port := range ports {
		var local []routing.Backend
		if req.Local != nil {
			local = routing.LocalBackends(req.Local.service, req.Local.slices, port)
		} else {
			local = routing.ExportedBackends(req.Import, consumer, port)
		}
		r := routing.Compute(routing.Input{Consumer: consumer, Port: port, LocalBackends: local, Import: req.Import, Policy: spec, Health: health})
		view.Routes = append(view.Routes, viewOf(port, r))
	}
	return view, nil
}

// exportedPorts returns the ports of imp that cluster's export serves.
func exportedPorts(imp *v1alpha1.ServiceImport, cluster string) []int32 {
	if imp == nil {
		return nil
	}
	var out []int32
	for _, p := range imp.Spec.Ports {
		if len(routing.ExportedBackends(imp, cluster, p.Port)) > 0 {
			out = append(out, p.Port)
		}
	}
	return out
}

func portList(ports []int32) string {
	if len(ports) == 0 {
		return "none"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// printRoutes prints a route view as text: for each port, a table of its
// tiers, then a table of every cluster considered and why it is in or out.
func printRoutes(w io.Writer, view *routeView) error {
	w = escaping(w)
	// Each table is aligned on its own: the plugin's tab writers remember
	// widths across blank lines.
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "Service:\t%s\n", cell(view.Service))
	fmt.Fprintf(tw, "From:\t%s\n", cell(view.Consumer))
	fmt.Fprintf(tw, "Local endpoints:\t%s\n", cell(view.Note))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(view.Routes) == 0 {
		fmt.Fprintln(w, "\nNo port of the service is known: no member exports it, and the consumer's own Service was not read.")
	}
	for _, r := range view.Routes {
		fmt.Fprintf(w, "\nPort %d, policy %s:\n", r.Port, cell(r.LbType))
		if len(r.Tiers) == 0 {
			fmt.Fprintln(w, "  no route: no cluster can serve this consumer; a request is answered 503")
		} else {
			tw = printers.GetNewTabWriter(w)
			fmt.Fprintln(tw, "  TIER\tCLUSTER\tWEIGHT\tBACKENDS")
			for i, t := range r.Tiers {
				for _, d := range t {
					name := d.Cluster
					if d.Local {
						name += " (local)"
					}
					backends := make([]string, 0, len(d.Backends))
					for _, b := range d.Backends {
						backends = append(backends, routing.Backend{Host: b.Host, Port: b.Port}.Address()+b.Path)
					}
					fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\n", i, cell(name), d.Weight, cell(strings.Join(backends, ", ")))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(w)
		tw = printers.GetNewTabWriter(w)
		fmt.Fprintln(tw, "  CLUSTER\tROUTE\tREASON\tMESSAGE")
		for _, d := range r.Decisions {
			state := "out"
			if d.Tier >= 0 {
				state = fmt.Sprintf("tier %d", d.Tier)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cell(d.Cluster), state, cell(d.Reason), cell(d.Message))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// printRoutesAs prints a route view as JSON or YAML. Both escape control
// characters themselves; the writer escapes again whatever else could
// reach the terminal.
func printRoutesAs(w io.Writer, format string, view *routeView) error {
	b, err := json.MarshalIndent(view, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = escaping(w).Write(b)
	return err
}

// findCluster returns the Cluster whose name or key is ref.
func findCluster(clusters []v1alpha1.Cluster, ref string) (*v1alpha1.Cluster, error) {
	for i := range clusters {
		c := &clusters[i]
		if c.Name == ref || keyOf(c.Name, c.Spec) == ref {
			return c, nil
		}
	}
	return nil, fmt.Errorf("--from %q is neither the name nor the key of a Cluster on the control plane", ref)
}

// readLocal reads the consumer's Service and its EndpointSlices from the
// member of the member flags, after checking that it is the consumer.
func (o *serviceOptions) readLocal(ctx context.Context, consumer *v1alpha1.Cluster, namespace, name string) (*localService, error) {
	m, err := o.member.connect(ctx, deref(o.controlPlane.KubeConfig))
	if err != nil {
		return nil, err
	}
	uid, err := m.clusterUID(ctx)
	if err != nil {
		return nil, err
	}
	key := keyOf(consumer.Name, consumer.Spec)
	switch {
	case sameMember(consumer, uid, m.endpoint.Server, m.config.Host):
	case consumer.Annotations[MemberUIDAnnotation] == "" && consumer.Spec.Kubeconfig == "":
		// Registered with a credentials Secret by hand: nothing the
		// plugin may read tells which member it is.
		fmt.Fprintf(o.streams.ErrOut, "Warning: Cluster %s records nothing that tells whether the member at %s is it; taking it as %s\n",
			cell(consumer.Name), cell(m.where), cell(key))
	default:
		return nil, fmt.Errorf("the member at %s is not Cluster %s (key %s), which is the member %s: pass the member flags of %s",
			m.where, consumer.Name, key, whereIs(consumer), consumer.Name)
	}

	local := &localService{where: m.where}
	svc, err := m.kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return local, nil
	case err != nil:
		return nil, m.wrap(fmt.Errorf("reading Service %s/%s: %w", namespace, name, err))
	}
	local.service = svc
	opts := metav1.ListOptions{
		LabelSelector: labels.Set{discoveryv1.LabelServiceName: name}.String(),
		Limit:         100,
	}
	for {
		list, err := m.kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, opts)
		if err != nil {
			return nil, m.wrap(fmt.Errorf("listing the EndpointSlices of Service %s/%s: %w", namespace, name, err))
		}
		for i := range list.Items {
			local.slices = append(local.slices, &list.Items[i])
		}
		if list.Continue == "" {
			return local, nil
		}
		if len(local.slices) >= maxEndpointSlices {
			return nil, fmt.Errorf("the member at %s has more than %d EndpointSlices of Service %s/%s", m.where, maxEndpointSlices, namespace, name)
		}
		opts.Continue = list.Continue
	}
}
