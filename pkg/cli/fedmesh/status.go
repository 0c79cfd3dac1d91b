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
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

type statusOptions struct {
	*options
	output string
}

func newStatusCommand(parent *options) *cobra.Command {
	o := &statusOptions{options: parent}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the member clusters: key, readiness, exports, imports, last heartbeat",
		Long: `Show the member clusters of the federation, or the one named.

READY and REASON are the Cluster's Ready condition as fedmesh-apiserver last
probed the member. EXPORTS counts the member's ServiceExports. IMPORTS counts
the ServiceImports of the control plane that other members serve and this one
does not: those fedmesh-syncer writes into the member. Both are read from the
control plane alone; no member is contacted.`,
		Example: `  kubectl fedmesh status
  kubectl fedmesh status cluster-1 -o wide
  kubectl fedmesh status service httpbin/httpbin`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.clusters(cmd.Context(), name)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", `"wide" adds the gateway, the Kubernetes version and the Ready message`)
	cmd.AddCommand(newStatusServiceCommand(o))
	return cmd
}

type serviceOptions struct {
	*statusOptions
	from   string
	port   int32
	output string
}

func newStatusServiceCommand(parent *statusOptions) *cobra.Command {
	o := &serviceOptions{statusOptions: parent}
	cmd := &cobra.Command{
		Use:   "service NAMESPACE/NAME [--from CLUSTER]",
		Short: "Show a federated service: exporting clusters, ports, conflicts, policy and consumers; or the route of one consumer",
		Long: `Show the federated service NAMESPACE/NAME as the control plane computes it:
its ports, the clusters that export it with the endpoints they serve and the
Valid and Conflict conditions of each export, the GlobalTrafficPolicy of the
same namespace and name, and the clusters that consume it (every member that
does not export it: fedmesh-syncer writes the import and the policy there).

With --from CLUSTER (a Cluster's name or key), show instead the route that
consumer's requests get, port by port, as fedmesh-gateway computes it (the
same code, pkg/routing): its tiers in order of preference, each cluster with
its weight and backends, and for every cluster considered why it is in or
out: Local, NoLocalEndpoints, Target, NotATarget, NotExported, InvalidExport,
NotReady or ZeroWeight. The health of each cluster is its Ready condition on
the control plane.

The consumer's own endpoints are read from the member, as the gateway reads
them (its Service and the ready addresses of its EndpointSlices), when
--member-kubeconfig or --member-context give access to it; the plugin checks
that this member is the consumer. Without them, the local endpoints are
unknown, and the consumer's own export stands for them, as in the policy's
status: a consumer that exports the service serves itself, one that does not
has no local endpoints. The output says which.`,
		Example: `  kubectl fedmesh status service httpbin/httpbin

  # The route of cluster-2, with its real endpoints
  kubectl fedmesh status service httpbin/httpbin --from cluster-2 --member-context cluster-2

  # As the control plane alone sees it, as JSON
  kubectl fedmesh status service httpbin/httpbin --from default/default/default/cluster-2 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				// "status service" alone is the status of a Cluster named
				// service.
				o.statusOptions.output = o.output
				return o.clusters(cmd.Context(), "service")
			}
			if o.from == "" {
				if o.output != "" || o.port != 0 {
					return fmt.Errorf("--output and --port need --from")
				}
				return o.service(cmd.Context(), args[0])
			}
			return o.route(cmd.Context(), args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "The consumer cluster, by name or key: show the route its requests get")
	f.Int32Var(&o.port, "port", 0, "With --from, the one port of the service to show (default: every port)")
	f.StringVarP(&o.output, "output", "o", "", `With --from, "json" or "yaml" prints the routes as data`)
	return cmd
}

func (o *statusOptions) clusters(ctx context.Context, name string) error {
	if o.output != "" && o.output != "wide" {
		return fmt.Errorf(`--output must be "wide" or empty, not %q`, o.output)
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	list, err := client.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	clusters := list.Items
	if name != "" {
		clusters = nil
		for _, c := range list.Items {
			if c.Name == name {
				clusters = append(clusters, c)
			}
		}
		if len(clusters) == 0 {
			return fmt.Errorf("no Cluster %q on the control plane", name)
		}
	}
	imports, err := client.FlomeshV1alpha1().ServiceImports("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	return printClusters(o.streams.Out, clusters, importCounts(list.Items, imports.Items), o.output == "wide", time.Now())
}

// importCounts returns, per Cluster name, how many of imports other
// clusters serve and it does not.
func importCounts(clusters []v1alpha1.Cluster, imports []v1alpha1.ServiceImport) map[string]int {
	counts := map[string]int{}
	for _, si := range imports {
		exporters := exportersOf(&si)
		if len(exporters) == 0 {
			continue
		}
		for _, c := range clusters {
			if !exporters[keyOf(c.Name, c.Spec)] {
				counts[c.Name]++
			}
		}
	}
	return counts
}

// exportersOf returns the keys of the clusters that serve an import.
func exportersOf(si *v1alpha1.ServiceImport) map[string]bool {
	out := map[string]bool{}
	for _, s := range si.Status.Clusters {
		out[s.Cluster] = true
	}
	return out
}

func printClusters(w io.Writer, clusters []v1alpha1.Cluster, imports map[string]int, wide bool, now time.Time) error {
	clusters = append([]v1alpha1.Cluster(nil), clusters...)
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].Name < clusters[j].Name })
	tw := printers.GetNewTabWriter(escaping(w))
	header := "NAME\tKEY\tREADY\tREASON\tEXPORTS\tIMPORTS\tLAST HEARTBEAT"
	if wide {
		header += "\tGATEWAY\tVERSION\tMESSAGE"
	}
	fmt.Fprintln(tw, header)
	for _, c := range clusters {
		status, reason, message := "Unknown", "<none>", ""
		if cond := ready(&c); cond != nil {
			status, reason, message = string(cond.Status), cond.Reason, cond.Message
		}
		key := c.Status.ClusterKey
		if key == "" {
			key = keyOf(c.Name, c.Spec)
		}
		heartbeat := "<never>"
		if c.Status.LastHeartbeatTime != nil {
			heartbeat = duration.HumanDuration(now.Sub(c.Status.LastHeartbeatTime.Time)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s", cell(c.Name), cell(key), cell(status), cell(reason), c.Status.ExportCount, imports[c.Name], heartbeat)
		if wide {
			version := c.Status.KubernetesVersion
			if version == "" {
				version = "<unknown>"
			}
			fmt.Fprintf(tw, "\t%s:%d\t%s\t%s", cell(c.Spec.GatewayHost), c.Spec.GatewayPort, cell(version), cell(message))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func splitRef(ref string) (string, string, error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q is not NAMESPACE/NAME", ref)
	}
	return ns, name, nil
}

// route prints the route of the consumer --from to the service ref.
func (o *serviceOptions) route(ctx context.Context, ref string) error {
	if o.output != "" && o.output != "json" && o.output != "yaml" {
		return fmt.Errorf(`--output must be "json", "yaml" or empty, not %q`, o.output)
	}
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port must be between 1 and 65535, not %d", o.port)
	}
	ns, name, err := splitRef(ref)
	if err != nil {
		return err
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	clusters, err := client.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	consumer, err := findCluster(clusters.Items, o.from)
	if err != nil {
		return err
	}
	req := routeRequest{Namespace: ns, Name: name, Consumer: consumer, Clusters: clusters.Items, Port: o.port}
	req.Import, err = client.FlomeshV1alpha1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		req.Import, err = nil, nil
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	req.Policy, err = client.FlomeshV1alpha1().GlobalTrafficPolicies(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		req.Policy, err = nil, nil
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	if o.member.set() {
		if req.Local, err = o.readLocal(ctx, consumer, ns, name); err != nil {
			return err
		}
	} else if req.Import == nil {
		return fmt.Errorf("no federated service %s/%s: no member exports it; to see whether %s serves it alone, give access to the member with --member-kubeconfig or --member-context", ns, name, consumer.Name)
	}
	view, err := computeRoutes(req)
	if err != nil {
		return err
	}
	if o.output != "" {
		return printRoutesAs(o.streams.Out, o.output, view)
	}
	return printRoutes(o.streams.Out, view)
}

func (o *statusOptions) service(ctx context.Context, ref string) error {
	ns, name, err := splitRef(ref)
	if err != nil {
		return err
	}
	client, cpConfig, err := o.controlPlaneClient()
	if err != nil {
		return err
	}
	si, err := client.FlomeshV1alpha1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no federated service %s/%s: no member exports it", ns, name)
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	gtp, err := client.FlomeshV1alpha1().GlobalTrafficPolicies(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		gtp, err = nil, nil
	}
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	clusters, err := client.FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return controlPlaneError(cpConfig, err)
	}
	return printService(o.streams.Out, si, gtp, clusters.Items)
}

func printService(w io.Writer, si *v1alpha1.ServiceImport, gtp *v1alpha1.GlobalTrafficPolicy, clusters []v1alpha1.Cluster) error {
	tw := printers.GetNewTabWriter(escaping(w))
	var ports []string
	for _, p := range si.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		ports = append(ports, fmt.Sprintf("%d/%s", p.Port, proto))
	}
	exporters := exportersOf(si)
	var consumers []string
	for _, c := range clusters {
		if k := keyOf(c.Name, c.Spec); !exporters[k] {
			consumers = append(consumers, k)
		}
	}
	sort.Strings(consumers)
	fmt.Fprintf(tw, "Service:\t%s\n", cell(si.Namespace+"/"+si.Name))
	fmt.Fprintf(tw, "Type:\t%s\n", cell(orNone(string(si.Spec.Type))))
	fmt.Fprintf(tw, "Ports:\t%s\n", cell(orNone(strings.Join(ports, ", "))))
	fmt.Fprintf(tw, "Policy:\t%s\n", cell(policyLine(gtp)))
	fmt.Fprintf(tw, "Consumers:\t%s\n", cell(orNone(strings.Join(consumers, ", "))))
	fmt.Fprintln(tw)

	endpoints := map[string][]string{}
	for _, p := range si.Spec.Ports {
		for _, e := range p.Endpoints {
			endpoints[e.ClusterKey] = append(endpoints[e.ClusterKey],
				fmt.Sprintf("%d→%s:%d%s", p.Port, e.Target.Host, e.Target.Port, e.Target.Path))
		}
	}
	fmt.Fprintln(tw, "EXPORTED BY\tSERVING\tENDPOINTS\tVALID\tCONFLICT")
	rows := map[string]bool{}
	for _, e := range si.Status.Exports {
		rows[e.Cluster] = true
		valid, conflict := "Unknown", "Unknown"
		if len(e.Conditions) == 0 {
			// The control plane lists the conditions of an export only
			// when it is not valid or is in conflict.
			valid, conflict = "True", "False"
		}
		if c := meta.FindStatusCondition(e.Conditions, "Valid"); c != nil {
			valid = string(c.Status)
			if c.Status != metav1.ConditionTrue && c.Reason != "" {
				valid += " (" + c.Reason + ": " + c.Message + ")"
			}
		}
		if c := meta.FindStatusCondition(e.Conditions, "Conflict"); c != nil {
			conflict = string(c.Status)
			if c.Status == metav1.ConditionTrue {
				conflict += " (" + c.Reason + ": " + c.Message + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(e.Cluster), yesNo(exporters[e.Cluster]), cell(orNone(strings.Join(endpoints[e.Cluster], ", "))), cell(valid), cell(conflict))
	}
	for _, s := range si.Status.Clusters {
		if !rows[s.Cluster] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(s.Cluster), "yes", cell(orNone(strings.Join(endpoints[s.Cluster], ", "))), "Unknown", "Unknown")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printPolicyRoutes(escaping(w), si.Namespace+"/"+si.Name, gtp)
}

// printPolicyRoutes prints the routes of every member as the policy's
// status reports them, or why it does not.
func printPolicyRoutes(w io.Writer, ref string, gtp *v1alpha1.GlobalTrafficPolicy) error {
	fmt.Fprintln(w)
	hint := "see kubectl fedmesh status service " + ref + " --from CLUSTER"
	if gtp == nil {
		fmt.Fprintf(w, "Routes:      no policy, so Locality: each member serves itself, or not at all; %s\n", cell(hint))
		return nil
	}
	routed := meta.FindStatusCondition(gtp.Status.Conditions, "Routed")
	if routed == nil {
		fmt.Fprintf(w, "Routes:      not reported yet; %s\n", cell(hint))
		return nil
	}
	fmt.Fprintf(w, "Routes:      %s (%s: %s); at length, %s\n", cell(string(routed.Status)), cell(routed.Reason), cell(routed.Message), cell(hint))
	if len(gtp.Status.Consumers) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "ROUTE OF\tPORT\tTIERS\tOUT")
	for _, r := range gtp.Status.Consumers {
		tiers := make([]string, 0, len(r.Tiers))
		for _, t := range r.Tiers {
			dests := make([]string, 0, len(t.Destinations))
			for _, d := range t.Destinations {
				dests = append(dests, fmt.Sprintf("%s=%d", d.Cluster, d.Weight))
			}
			tiers = append(tiers, strings.Join(dests, " "))
		}
		out := strings.TrimPrefix(r.Message, "out: ")
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", cell(r.Cluster), r.Port, cell(orValue(strings.Join(tiers, " | "), "<no route>")), cell(orNone(out)))
	}
	return tw.Flush()
}

func orValue(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func policyLine(gtp *v1alpha1.GlobalTrafficPolicy) string {
	if gtp == nil {
		return "none (Locality: consumers use their local service only)"
	}
	lb := string(gtp.Spec.LbType)
	if lb == "" {
		lb = string(v1alpha1.LocalityLbType)
	}
	status := map[string]v1alpha1.TargetStatus{}
	for _, t := range gtp.Status.Targets {
		status[t.ClusterKey] = t
	}
	var targets []string
	for _, t := range gtp.Spec.Targets {
		s := t.ClusterKey
		var notes []string
		if t.Weight != nil {
			notes = append(notes, "weight "+strconv.Itoa(int(*t.Weight)))
		}
		if st, ok := status[t.ClusterKey]; ok && st.Message != "" {
			notes = append(notes, st.Message)
		}
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, "; ") + ")"
		}
		targets = append(targets, s)
	}
	if len(targets) == 0 {
		return lb
	}
	return lb + " to " + strings.Join(targets, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
