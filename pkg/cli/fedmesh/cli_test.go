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
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
)

func cluster(name string, exports int32, ready metav1.ConditionStatus, reason string, heartbeat *time.Time) v1alpha1.Cluster {
	c := v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterSpec{Region: "default", Zone: "default", Group: "default", GatewayHost: "127.0.0.1", GatewayPort: 81},
		Status:     v1alpha1.ClusterStatus{ExportCount: exports, ClusterKey: "default/default/default/" + name, KubernetesVersion: "v1.37.2"},
	}
	if ready != "" {
		c.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: ready, Reason: reason, Message: "the message of " + name}}
	}
	if heartbeat != nil {
		c.Status.LastHeartbeatTime = &metav1.Time{Time: *heartbeat}
	}
	return c
}

func serviceImport(ns, name string, exporters ...string) v1alpha1.ServiceImport {
	si := v1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, e := range exporters {
		si.Status.Clusters = append(si.Status.Clusters, v1alpha1.SourceStatus{Cluster: "default/default/default/" + e})
	}
	return si
}

func TestImportCounts(t *testing.T) {
	clusters := []v1alpha1.Cluster{cluster("a", 0, "", "", nil), cluster("b", 0, "", "", nil), cluster("c", 0, "", "", nil)}
	tests := []struct {
		name    string
		imports []v1alpha1.ServiceImport
		want    map[string]int
	}{
		{name: "none", want: map[string]int{}},
		{name: "everyone but the exporters", imports: []v1alpha1.ServiceImport{
			serviceImport("ns", "one", "a"),
			serviceImport("ns", "two", "a", "b"),
		}, want: map[string]int{"b": 1, "c": 2}},
		{name: "an import nobody serves counts for nobody", imports: []v1alpha1.ServiceImport{serviceImport("ns", "gone")}, want: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, importCounts(clusters, tt.imports))
		})
	}
}

func TestPrintClusters(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	beat := now.Add(-7 * time.Second)
	clusters := []v1alpha1.Cluster{
		cluster("cluster-2", 0, metav1.ConditionFalse, "Forbidden", &beat),
		cluster("cluster-1", 2, metav1.ConditionTrue, "Connected", &beat),
		cluster("cluster-3", 0, "", "", nil),
	}
	var out bytes.Buffer
	require.NoError(t, printClusters(&out, clusters, map[string]int{"cluster-2": 2}, false, now))
	assert.Equal(t, strings.Join([]string{
		"NAME        KEY                                 READY     REASON      EXPORTS   IMPORTS   LAST HEARTBEAT",
		"cluster-1   default/default/default/cluster-1   True      Connected   2         0         7s ago",
		"cluster-2   default/default/default/cluster-2   False     Forbidden   0         2         7s ago",
		"cluster-3   default/default/default/cluster-3   Unknown   <none>      0         0         <never>",
		"",
	}, "\n"), out.String())

	out.Reset()
	require.NoError(t, printClusters(&out, clusters[:1], nil, true, now))
	assert.Contains(t, out.String(), "GATEWAY        VERSION   MESSAGE")
	assert.Contains(t, out.String(), "127.0.0.1:81   v1.37.2   the message of cluster-2")
}

func TestPrintService(t *testing.T) {
	si := serviceImport("httpbin", "httpbin", "cluster-1")
	si.Spec.Type = v1alpha1.ClusterSetIP
	si.Spec.Ports = []v1alpha1.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []v1alpha1.Endpoint{
		{ClusterKey: "default/default/default/cluster-1", Target: v1alpha1.Target{Host: "127.0.0.1", Port: 81, Path: "/cluster-1/httpbin"}},
	}}}
	si.Status.Exports = []v1alpha1.ExportStatus{
		// A healthy export is listed without conditions.
		{Cluster: "default/default/default/cluster-1", ObservedGeneration: 1},
		{Cluster: "default/default/default/cluster-3", Conditions: []metav1.Condition{
			{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid"},
			{Type: "Conflict", Status: metav1.ConditionTrue, Reason: "PortConflict", Message: "port 8080 is UDP"},
		}},
	}
	clusters := []v1alpha1.Cluster{cluster("cluster-1", 1, "", "", nil), cluster("cluster-2", 0, "", "", nil), cluster("cluster-3", 1, "", "", nil)}
	tests := []struct {
		name       string
		gtp        *v1alpha1.GlobalTrafficPolicy
		want       []string
		wantRegexp []string
	}{
		{name: "no policy", want: []string{
			"Routes:      no policy, so Locality: each member serves itself, or not at all",
			"Service:     httpbin/httpbin",
			"Ports:       8080/TCP",
			"Policy:      none (Locality: consumers use their local service only)",
			"Consumers:   default/default/default/cluster-2, default/default/default/cluster-3",
			"default/default/default/cluster-1   yes       8080→127.0.0.1:81/cluster-1/httpbin   True    False",
			"default/default/default/cluster-3   no        <none>                                True    True (PortConflict: port 8080 is UDP)",
		}},
		{name: "a policy", gtp: &v1alpha1.GlobalTrafficPolicy{
			Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.ActiveActiveLbType, Targets: []v1alpha1.TrafficTarget{
				{ClusterKey: "default/default/default/cluster-1", Weight: ptr.To[int32](3)},
				{ClusterKey: "default/default/default/cluster-3"},
			}},
			Status: v1alpha1.GlobalTrafficPolicyStatus{Targets: []v1alpha1.TargetStatus{
				{ClusterKey: "default/default/default/cluster-3", Known: true, Message: "does not export the service"},
			}},
		}, want: []string{"Policy:      ActiveActive to default/default/default/cluster-1 (weight 3), default/default/default/cluster-3 (does not export the service)",
			"Routes:      not reported yet; see kubectl fedmesh status service httpbin/httpbin --from CLUSTER"}},
		{name: "a policy's routes", gtp: &v1alpha1.GlobalTrafficPolicy{
			Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: "default/default/default/cluster-1"}}},
			Status: v1alpha1.GlobalTrafficPolicyStatus{
				Conditions: []metav1.Condition{{Type: "Routed", Status: "False", Reason: "ConsumersWithoutRoute", Message: "members without a route: default/default/default/cluster-3 (port 8080)"}},
				Consumers: []v1alpha1.ConsumerRoute{
					{Cluster: "default/default/default/cluster-1", Port: 8080, Tiers: []v1alpha1.RouteTier{
						{Destinations: []v1alpha1.RouteDestination{{Cluster: "default/default/default/cluster-1", Weight: 100}}}}},
					{Cluster: "default/default/default/cluster-2", Port: 8080, Tiers: []v1alpha1.RouteTier{
						{Destinations: []v1alpha1.RouteDestination{{Cluster: "default/default/default/cluster-1", Weight: 100}, {Cluster: "default/default/default/cluster-3", Weight: 50}}}},
						Message: "out: default/default/default/cluster-2: NoLocalEndpoints"},
					{Cluster: "default/default/default/cluster-3", Port: 8080, Message: "out: default/default/default/cluster-1: NotReady\x1b[2J"},
				},
			},
		}, want: []string{
			"Routes:      False (ConsumersWithoutRoute: members without a route: default/default/default/cluster-3 (port 8080)); at length, see kubectl fedmesh status service httpbin/httpbin --from CLUSTER",
		}, wantRegexp: []string{
			`\nROUTE OF\s+PORT\s+TIERS\s+OUT\n`,
			`\ndefault/default/default/cluster-1\s+8080\s+default/default/default/cluster-1=100\s+<none>\n`,
			`\ndefault/default/default/cluster-2\s+8080\s+default/default/default/cluster-1=100 default/default/default/cluster-3=50\s+default/default/default/cluster-2: NoLocalEndpoints\n`,
			`\ndefault/default/default/cluster-3\s+8080\s+<no route>\s+default/default/default/cluster-1: NotReady\^\[\[2J\n`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, printService(&out, &si, tt.gtp, clusters))
			for _, w := range tt.want {
				assert.Contains(t, out.String(), w)
			}
			for _, w := range tt.wantRegexp {
				assert.Regexp(t, w, out.String())
			}
		})
	}
}

// run runs the plugin in process.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	code := Run(context.Background(), args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return out.String(), errOut.String(), code
}

// TestErrorsWithoutServers checks the errors found before any request: one
// line on stderr, exit code 1, no usage.
func TestErrorsWithoutServers(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cp"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["cp"] = &clientcmdapi.Context{Cluster: "cp", AuthInfo: "u"}
	cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "cp", AuthInfo: "u"}
	cfg.CurrentContext = "cp"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	missing := filepath.Join(t.TempDir(), "missing")
	require.NoError(t, os.WriteFile(missing+".bad", []byte("{not yaml"), 0o600))

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"join"}, "join needs exactly one argument"},
		{"bad name", []string{"join", "Cluster_1"}, `invalid cluster name "Cluster_1"`},
		{"no gateway", []string{"join", "c", "--kubeconfig", path, "--member-context", "m"}, "--gateway-host is required"},
		{"bad dry-run", []string{"join", "c", "--gateway-host", "h", "--dry-run=maybe"}, `--dry-run must be`},
		{"short token", []string{"join", "c", "--gateway-host", "h", "--token-expiration", "1m"}, "shorter than the 10m"},
		{"bad member server", []string{"join", "c", "--gateway-host", "h", "--member-server", "10.0.0.1"}, "is not a URL"},
		{"unknown control-plane context", []string{"status", "--kubeconfig", path, "--context", "nope"}, `control-plane kubeconfig: context "nope" does not exist (contexts: cp, m)`},
		{"unknown member context", []string{"join", "c", "--gateway-host", "h", "--kubeconfig", path, "--member-context", "nope"}, `member kubeconfig: context "nope" does not exist (contexts: cp, m)`},
		{"no member", []string{"join", "c", "--gateway-host", "h", "--kubeconfig", path}, "no member given"},
		{"unreadable member kubeconfig", []string{"join", "c", "--gateway-host", "h", "--kubeconfig", path, "--member-kubeconfig", missing + ".bad"}, "member kubeconfig:"},
		{"unknown flag", []string{"status", "--bogus"}, "unknown flag: --bogus"},
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`},
		{"bad service", []string{"status", "service", "httpbin", "--kubeconfig", path}, `"httpbin" is not NAMESPACE/NAME`},
		{"bad output", []string{"status", "-o", "yaml", "--kubeconfig", path}, `--output must be "wide"`},
		{"output without --from", []string{"status", "service", "httpbin/httpbin", "-o", "json", "--kubeconfig", path}, "--output and --port need --from"},
		{"bad route output", []string{"status", "service", "httpbin/httpbin", "--from", "c", "-o", "wide", "--kubeconfig", path}, `--output must be "json", "yaml" or empty`},
		{"bad port", []string{"status", "service", "httpbin/httpbin", "--from", "c", "--port", "70000", "--kubeconfig", path}, "--port must be between 1 and 65535"},
		{"bad route service", []string{"status", "service", "httpbin", "--from", "c", "--kubeconfig", path}, `"httpbin" is not NAMESPACE/NAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			assert.Equal(t, 1, code)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
			assert.True(t, strings.HasPrefix(errOut, "error: "), errOut)
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut, "Usage:")
		})
	}
}

func TestPrintError(t *testing.T) {
	var b bytes.Buffer
	printError(&b, assert.AnError)
	assert.Equal(t, "error: "+assert.AnError.Error()+"\n", b.String())
	b.Reset()
	printError(&b, &multiLine{})
	assert.Equal(t, "error: first second\n", b.String())
}

type multiLine struct{}

func (*multiLine) Error() string { return "first\n  second\n" }

func TestTerminationStatus(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		deleted time.Duration
		conds   []corev1.NamespaceCondition
		want    string
	}{
		{name: "the controller has not looked yet", deleted: 2 * time.Second,
			want: "deleted 2s ago, the member's namespace controller has not reported on it yet (it starts 5s after a deletion)"},
		{name: "no controller runs", deleted: time.Minute,
			want: "deleted 1m0s ago, no namespace controller has reported on it: does the member run kube-controller-manager?"},
		{name: "content and finalizers remaining", deleted: time.Minute, conds: []corev1.NamespaceCondition{
			{Type: corev1.NamespaceDeletionDiscoveryFailure, Status: corev1.ConditionFalse, Message: "All resources successfully discovered"},
			{Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, Message: "Some resources are remaining: configmaps. has 1 resource instances"},
			{Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionTrue, Message: "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"},
		}, want: "NamespaceContentRemaining: Some resources are remaining: configmaps. has 1 resource instances; " +
			"NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := &corev1.Namespace{
				ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &metav1.Time{Time: now.Add(-tt.deleted)}},
				Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating, Conditions: tt.conds},
			}
			assert.Equal(t, tt.want, terminationStatus(ns, now))
		})
	}
}
