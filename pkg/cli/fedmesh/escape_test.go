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
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
)

// Sequences a hostile member or object could carry: one that retitles the
// terminal window (OSC 0, ended by BEL), one that clears the screen (CSI
// 2J), and a carriage return that would overwrite the start of a line.
const (
	retitle = "\x1b]0;pwned\x07"
	clear   = "\x1b[2J"
)

// noRawEscape fails when the output holds a byte that drives a terminal.
func noRawEscape(t *testing.T, output string) {
	t.Helper()
	assert.NotContains(t, output, "\x1b", "an ESC reached the output raw: %q", output)
	assert.NotContains(t, output, "\r", "a CR reached the output raw: %q", output)
}

// fakeControlPlane answers the requests of "kubectl fedmesh status" as
// fedmesh-apiserver does, with the objects it holds.
type fakeControlPlane struct {
	clusters []v1alpha1.Cluster
	imports  []v1alpha1.ServiceImport
	gtps     []v1alpha1.GlobalTrafficPolicy
	// fail, when set, is the answer to every request.
	fail *metav1.Status
}

func (f *fakeControlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const group = "/apis/flomesh.io/v1alpha1/"
	typed := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: kind}
	}
	reply := func(code int, obj any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(obj)
	}
	notFound := &metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure,
		Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: "not found"}
	if f.fail != nil {
		f.fail.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
		reply(int(f.fail.Code), f.fail)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, group), "/")
	switch {
	case len(parts) == 1 && parts[0] == "clusters":
		reply(http.StatusOK, &v1alpha1.ClusterList{TypeMeta: typed("ClusterList"), Items: f.clusters})
	case len(parts) == 1 && parts[0] == "serviceimports":
		reply(http.StatusOK, &v1alpha1.ServiceImportList{TypeMeta: typed("ServiceImportList"), Items: f.imports})
	case len(parts) == 4 && parts[0] == "namespaces" && parts[2] == "serviceimports":
		for i := range f.imports {
			if si := f.imports[i]; si.Namespace == parts[1] && strings.HasPrefix(si.Name, parts[3]) {
				si.TypeMeta = typed("ServiceImport")
				reply(http.StatusOK, &si)
				return
			}
		}
		reply(http.StatusNotFound, notFound)
	case len(parts) == 4 && parts[0] == "namespaces" && parts[2] == "globaltrafficpolicies":
		for i := range f.gtps {
			if g := f.gtps[i]; g.Namespace == parts[1] && g.Name == parts[3] {
				g.TypeMeta = typed("GlobalTrafficPolicy")
				reply(http.StatusOK, &g)
				return
			}
		}
		reply(http.StatusNotFound, notFound)
	default:
		reply(http.StatusNotFound, notFound)
	}
}

// start serves the fake and returns a kubeconfig whose current context
// is it.
func (f *fakeControlPlane) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cp"] = &clientcmdapi.Cluster{Server: srv.URL}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["cp"] = &clientcmdapi.Context{Cluster: "cp", AuthInfo: "u"}
	cfg.CurrentContext = "cp"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// TestStatusEscapesTerminalControls runs "kubectl fedmesh status" against
// a control plane whose objects carry terminal escape sequences where a
// member or whoever writes Clusters and policies chooses the text: none
// reaches stdout or stderr raw, and none adds a row to a table.
func TestStatusEscapesTerminalControls(t *testing.T) {
	now := time.Now()
	healthy := func() v1alpha1.Cluster { return cluster("cluster-1", 1, metav1.ConditionTrue, "Connected", &now) }
	httpbin := func() v1alpha1.ServiceImport {
		si := serviceImport("httpbin", "httpbin", "cluster-1")
		si.Spec.Ports = []v1alpha1.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []v1alpha1.Endpoint{
			{ClusterKey: "default/default/default/cluster-1", Target: v1alpha1.Target{Host: "127.0.0.1", Port: 81, Path: "/cluster-1/httpbin"}},
		}}}
		return si
	}
	tests := []struct {
		name string
		args []string
		cp   fakeControlPlane
		// want are in the output, escaped.
		want []string
		// lines is the number of lines of stdout, when checked.
		lines int
		fails bool
	}{
		{
			name: "a cluster key",
			args: []string{"status"},
			cp: fakeControlPlane{clusters: []v1alpha1.Cluster{func() v1alpha1.Cluster {
				c := healthy()
				c.Status.ClusterKey = "default/default/default/" + retitle + "cluster-1"
				return c
			}()}},
			want:  []string{"default/default/default/^[]0;pwned\acluster-1"},
			lines: 2,
		},
		{
			name: "a cluster name",
			args: []string{"status"},
			cp: fakeControlPlane{clusters: []v1alpha1.Cluster{func() v1alpha1.Cluster {
				c := healthy()
				c.Name = "cluster-1" + clear
				return c
			}()}},
			want:  []string{"cluster-1^[[2J "},
			lines: 2,
		},
		{
			name: "the Ready reason and message, the gateway host and the Kubernetes version a member reports",
			args: []string{"status", "-o", "wide"},
			cp: fakeControlPlane{clusters: []v1alpha1.Cluster{func() v1alpha1.Cluster {
				c := healthy()
				c.Status.Conditions[0].Status, c.Status.Conditions[0].Reason = metav1.ConditionFalse, "Forbidden"+clear
				c.Status.Conditions[0].Message = "denied" + retitle + "\rcluster-1 is fine"
				c.Status.KubernetesVersion = "v1.37.2" + clear
				c.Spec.GatewayHost = "gw" + retitle
				return c
			}()}},
			want:  []string{"Forbidden^[[2J", "gw^[]0;pwned\a:81", "v1.37.2^[[2J", "denied^[]0;pwned\a\\rcluster-1 is fine"},
			lines: 2,
		},
		{
			name: "a message that would forge a row of its own",
			args: []string{"status", "-o", "wide"},
			cp: fakeControlPlane{clusters: []v1alpha1.Cluster{func() v1alpha1.Cluster {
				c := healthy()
				c.Status.Conditions[0].Message = "ok\ncluster-9\tdefault/default/default/cluster-9\tTrue\tConnected"
				return c
			}()}},
			want:  []string{"ok cluster-9 default/default/default/cluster-9 True Connected"},
			lines: 2,
		},
		{
			name: "a ServiceExport condition message",
			args: []string{"status", "service", "httpbin/httpbin"},
			cp: fakeControlPlane{clusters: []v1alpha1.Cluster{healthy()}, imports: []v1alpha1.ServiceImport{func() v1alpha1.ServiceImport {
				si := httpbin()
				si.Status.Exports = []v1alpha1.ExportStatus{{Cluster: "default/default/default/cluster-1", Conditions: []metav1.Condition{
					{Type: "Valid", Status: metav1.ConditionFalse, Reason: "IngressConflict", Message: "the Ingress " + retitle + " serves /x" + clear},
					{Type: "Conflict", Status: metav1.ConditionTrue, Reason: "PortConflict", Message: "port 8080\nis" + clear + " UDP"},
				}}}
				return si
			}()}},
			want: []string{
				"False (IngressConflict: the Ingress ^[]0;pwned\a serves /x^[[2J)",
				"True (PortConflict: port 8080 is^[[2J UDP)",
			},
		},
		{
			name: "a Service name, endpoints and a policy's target message",
			args: []string{"status", "service", "httpbin/httpbin"},
			cp: fakeControlPlane{
				clusters: []v1alpha1.Cluster{healthy()},
				imports: []v1alpha1.ServiceImport{func() v1alpha1.ServiceImport {
					si := httpbin()
					si.Name = "httpbin" + clear
					si.Spec.Ports[0].Endpoints[0].Target.Path = "/cluster-1/" + retitle
					return si
				}()},
				gtps: []v1alpha1.GlobalTrafficPolicy{{
					ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
					Spec: v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{
						{ClusterKey: "default/default/default/cluster-1", Weight: ptr.To[int32](1)},
					}},
					Status: v1alpha1.GlobalTrafficPolicyStatus{Targets: []v1alpha1.TargetStatus{
						{ClusterKey: "default/default/default/cluster-1", Message: "gone" + clear},
					}},
				}},
			},
			want: []string{"Service:     httpbin/httpbin^[[2J", "8080→127.0.0.1:81/cluster-1/^[]0;pwned\a", "(weight 1; gone^[[2J)"},
		},
		{
			name: "an error of the control plane quoting an object",
			args: []string{"status", "service", "httpbin/httpbin"},
			cp: fakeControlPlane{fail: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
				Message: `serviceimports "httpbin` + retitle + `" is forbidden: ` + clear}},
			want:  []string{`error: serviceimports "httpbin^[]0;pwned` + "\a" + `" is forbidden: ^[[2J`},
			fails: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kubeconfig := tt.cp.start(t)
			out, errOut, code := run(t, append(tt.args, "--kubeconfig", kubeconfig)...)
			noRawEscape(t, out+errOut)
			if tt.fails {
				assert.Equal(t, 1, code)
				assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
			} else {
				require.Equal(t, 0, code, errOut)
				assert.Empty(t, errOut)
			}
			for _, w := range tt.want {
				assert.Contains(t, out+errOut, w)
			}
			if tt.lines > 0 {
				assert.Equal(t, tt.lines, strings.Count(out, "\n"), "one row per Cluster:\n%s", out)
			}
		})
	}
}

// TestWaitReadyEscapesTerminalControls checks the progress lines of
// join --wait and rotate --wait, which repeat the Ready condition fedmesh
// reports and the version the member says it runs.
func TestWaitReadyEscapesTerminalControls(t *testing.T) {
	tests := []struct {
		name   string
		status metav1.ConditionStatus
		want   []string
		err    string
	}{
		{name: "not Ready", status: metav1.ConditionFalse,
			want: []string{"waiting for cluster cluster-1: Ready=False Forbidden^[[2J: denied^[]0;pwned\a \\rok\n"},
			// printError makes one line of it, taking CR for a space.
			err: "error: cluster \"cluster-1\" not Ready after 700ms: Forbidden^[[2J: denied^[]0;pwned\a ok\n"},
		{name: "Ready", status: metav1.ConditionTrue,
			want: []string{"cluster cluster-1 is Ready: key default/default/default/cluster-1, Kubernetes v1.37.2^[]0;pwned\a\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster("cluster-1", 0, tt.status, "Forbidden"+clear, nil)
			c.Generation = 1
			c.Status.Conditions[0].ObservedGeneration = 1
			c.Status.Conditions[0].Message = "denied" + retitle + "\n\rok"
			c.Status.KubernetesVersion = "v1.37.2" + retitle
			var out bytes.Buffer
			err := waitReady(context.Background(), fake.NewClientset(&c), &out, "cluster-1", 1, 700*time.Millisecond)
			noRawEscape(t, out.String())
			for _, w := range tt.want {
				assert.Contains(t, out.String(), w)
			}
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var printed bytes.Buffer
			printError(&printed, err)
			noRawEscape(t, printed.String())
			assert.Equal(t, tt.err, printed.String())
		})
	}
}

// TestPrintClusterEscapesTerminalControls checks every output format of
// join's Cluster: JSON and YAML escape control characters themselves; a
// template or a name would print them as they are.
func TestPrintClusterEscapesTerminalControls(t *testing.T) {
	c := cluster("cluster-1", 0, metav1.ConditionFalse, "Forbidden", nil)
	c.Status.Conditions[0].Message = "denied" + retitle + clear + "\r"
	tests := []struct {
		output string
		want   string
	}{
		{output: "", want: "cluster.flomesh.io/cluster-1 joined"},
		{output: "name", want: "cluster.flomesh.io/cluster-1"},
		{output: "json", want: `"message": "denied\u001b]0;pwned\u0007\u001b[2J\r"`},
		{output: "yaml", want: `message: "denied\e]0;pwned\a\e[2J\r"`},
		{output: "jsonpath={.status.conditions[0].message}", want: "denied^[]0;pwned\a^[[2J\\r"},
		{output: "go-template={{(index .status.conditions 0).message}}", want: "denied^[]0;pwned\a^[[2J\\r"},
	}
	for _, tt := range tests {
		t.Run(tt.output, func(t *testing.T) {
			flags := newPrintFlags("joined")
			*flags.OutputFormat = tt.output
			var out bytes.Buffer
			require.NoError(t, printCluster(&out, flags, &c, false))
			noRawEscape(t, out.String())
			assert.Contains(t, out.String(), tt.want)
		})
	}
}

func TestEscapingWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{name: "plain text is untouched", writes: []string{"cluster-1\tTrue\n"}, want: "cluster-1\tTrue\n"},
		{name: "ESC and CR are made visible", writes: []string{"a" + retitle + "b\rc" + clear}, want: "a^[]0;pwned\ab\\rc^[[2J"},
		{name: "a sequence split across writes", writes: []string{"x\x1b", "[2J\r", "\ny"}, want: "x^[[2J\\r\ny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := escaping(&out)
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				require.NoError(t, err)
				assert.Equal(t, len(s), n, "what was given is what is counted")
			}
			assert.Equal(t, tt.want, out.String())
			assert.Equal(t, w, escaping(w), "wrapping twice is wrapping once")
		})
	}
	// A writer that fails says so.
	_, err := escaping(failingWriter{}).Write([]byte("x"))
	assert.Error(t, err)
	// text/tabwriter takes the count it gets for the count it gave.
	var out bytes.Buffer
	tw := tabwriter.NewWriter(escaping(&out), 6, 4, 3, ' ', 0)
	_, err = tw.Write([]byte("a" + clear + "\tb\n"))
	require.NoError(t, err)
	require.NoError(t, tw.Flush())
	assert.Equal(t, "a^[[2J   b\n", out.String())
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

// TestServerWarningsAndLogsEscaped checks the two ways a server's text
// reaches stderr outside the plugin's own lines: the warnings of an
// answer, and what client-go logs with klog.
func TestServerWarningsAndLogsEscaped(t *testing.T) {
	var out bytes.Buffer
	h := warningsTo(&out)
	h.HandleWarningHeader(299, "-", "deprecated"+retitle)
	h.HandleWarningHeader(299, "-", "deprecated"+retitle)
	assert.Equal(t, "Warning: deprecated^[]0;pwned\a\n", out.String(), "escaped, once")

	out.Reset()
	logTo(&out)
	t.Cleanup(func() { logTo(os.Stderr) })
	klog.ErrorS(errors.New("bad"), "request failed", "body", "line 1\n"+clear+"line 2")
	klog.Flush()
	noRawEscape(t, out.String())
	assert.Contains(t, out.String(), "^[[2Jline 2")
	assert.Equal(t, 1, strings.Count(out.String(), "request failed"), "once: %s", out.String())
}
