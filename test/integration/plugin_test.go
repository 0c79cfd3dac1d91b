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
package integration

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh/v1alpha1"
	"github.com/fedmesh/fedmesh/pkg/membercrds"
	"github.com/fedmesh/fedmesh/pkg/memberrbac"
	"github.com/fedmesh/fedmesh/pkg/members"
	"github.com/fedmesh/fedmesh/test/framework"
)

// plugin runs kubectl-fedmesh as a user does: with one kubeconfig holding
// a context for the control plane (the current one) and one per member.
type plugin struct {
	bin        string
	kubeconfig string
	home       string
}

func newPlugin(t *testing.T, f *framework.Federation) plugin {
	t.Helper()
	bin, err := framework.FedmeshBinary("kubectl-fedmesh")
	require.NoError(t, err)
	all := clientcmdapi.NewConfig()
	for _, c := range append([]*framework.Cluster{f.ControlPlane}, f.Members...) {
		b, err := c.Kubeconfig()
		require.NoError(t, err)
		cfg, err := clientcmd.Load(b)
		require.NoError(t, err)
		all.Clusters[c.Name] = cfg.Clusters[c.Name]
		all.AuthInfos["admin@"+c.Name] = cfg.AuthInfos["admin"]
		all.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "admin@" + c.Name}
	}
	all.CurrentContext = f.ControlPlane.Name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*all, path))
	return plugin{bin: bin, kubeconfig: path, home: t.TempDir()}
}

// try runs the plugin, directly, and returns stdout, stderr and its error.
func (p plugin) try(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return p.exec(t, p.bin, args...)
}

// kubectl runs the plugin through the pinned kubectl, found on the PATH.
func (p plugin) kubectl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	k, err := framework.Binary("kubectl")
	require.NoError(t, err)
	// kubectl takes no flag before a plugin's name: they all go after.
	return p.exec(t, k, append([]string{"fedmesh"}, args...)...)
}

func (p plugin) exec(t *testing.T, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", p.kubeconfig)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+p.home, "KUBECONFIG=",
		"PATH="+filepath.Dir(p.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	err := cmd.Run()
	t.Logf("$ %s %s\n%s%s", filepath.Base(bin), strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), err
}

// running is a plugin started in the background, whose stdout is read as
// it comes.
type running struct {
	cmd   *exec.Cmd
	lines chan string
	out   strings.Builder
	// done is closed when stdout is closed.
	done   chan struct{}
	stderr bytes.Buffer
}

// start runs the plugin in the background; wait collects it.
func (p plugin) start(t *testing.T, ctx context.Context, args ...string) *running {
	t.Helper()
	cmd := exec.CommandContext(ctx, p.bin, append(args, "--kubeconfig", p.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HOME="+p.home, "KUBECONFIG=")
	r := &running{cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	cmd.Stderr = &r.stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.out.WriteString(sc.Text() + "\n")
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
	}()
	return r
}

// waitLine waits until the plugin prints a line containing s.
func (r *running) waitLine(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line := <-r.lines:
			if strings.Contains(line, s) {
				return
			}
		case <-r.done:
			require.Failf(t, "the plugin ended", "without printing %q; stderr: %s", s, r.stderr.String())
		case <-deadline:
			require.Failf(t, "no such line", "the plugin did not print %q within %s", s, within)
		}
	}
}

// wait waits for the plugin to end and returns its stdout and error.
func (r *running) wait(t *testing.T) (string, error) {
	t.Helper()
	<-r.done
	err := r.cmd.Wait()
	t.Logf("$ kubectl-fedmesh %s\n%s%s", strings.Join(r.cmd.Args[1:], " "), r.out.String(), r.stderr.String())
	return r.out.String(), err
}

func (p plugin) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := p.try(t, args...)
	require.NoError(t, err, "kubectl fedmesh %s: %s%s", strings.Join(args, " "), out, errOut)
	return out
}

// fail runs the plugin and checks that it fails as it should: exit code 1
// and one line on stderr, without usage or stack trace. It returns that
// line.
func (p plugin) fail(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := p.try(t, args...)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "a non-zero exit; stdout: %s", out)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line on stderr: %q", errOut)
	assert.True(t, strings.HasPrefix(errOut, "error: "), errOut)
	assert.NotContains(t, errOut, "goroutine")
	assert.NotContains(t, out+errOut, "Usage:")
	return strings.TrimSpace(errOut)
}

// storedKubeconfig returns a Cluster and the credentials fedmesh uses for
// it, as a kubeconfig: the Cluster's own, or one made of its credentials
// Secret, read as an administrator.
func storedKubeconfig(t *testing.T, ctx context.Context, f *framework.Federation, name string) (*v1alpha1.Cluster, string, *clientcmdapi.Config) {
	t.Helper()
	c, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	kubeconfig := c.Spec.Kubeconfig
	if ref := c.Spec.CredentialsSecretRef; ref != nil {
		require.Empty(t, kubeconfig, "a Cluster with a credentials Secret carries no kubeconfig")
		s, err := f.ControlPlane.Kube().CoreV1().Secrets(members.DefaultSecretsNamespace).Get(ctx, ref.Name, metav1.GetOptions{})
		require.NoError(t, err)
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: string(s.Data[members.SecretServerKey]), CertificateAuthorityData: s.Data[members.SecretCAKey]}
		cfg.AuthInfos["fedmesh"] = &clientcmdapi.AuthInfo{Token: string(s.Data[members.SecretTokenKey])}
		cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "fedmesh"}
		cfg.CurrentContext = "m"
		b, err := clientcmd.Write(*cfg)
		require.NoError(t, err)
		kubeconfig = string(b)
	}
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	require.NoError(t, err)
	return c, kubeconfig, cfg
}

// clientOf is a client of a member with the credentials a Cluster stores.
func clientOf(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	require.NoError(t, err)
	cfg.Timeout = 5 * time.Second
	return kubernetes.NewForConfigOrDie(cfg)
}

func dynamicOf(t *testing.T, kubeconfig string) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	require.NoError(t, err)
	cfg.Timeout = 5 * time.Second
	return dynamic.NewForConfigOrDie(cfg)
}

// unrelatedCRD is a CRD of another tool, named name (plural.group).
func unrelatedCRD(name string) *unstructured.Unstructured {
	plural, group, _ := strings.Cut(name, ".")
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]interface{}{"name": name},
		"spec": map[string]interface{}{
			"group": group,
			"names": map[string]interface{}{"plural": plural, "kind": "Thing" + strings.ToUpper(plural[:1]) + plural[1:]},
			"scope": "Namespaced",
			"versions": []interface{}{map[string]interface{}{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]interface{}{"openAPIV3Schema": map[string]interface{}{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
}

// TestPlugin drives kubectl fedmesh on a federation whose members start
// bare (join installs their CRDs) and are joined by the plugin
// alone, with the identity it creates: what fedmesh-apiserver and
// fedmesh-syncer do there works with the permissions join grants.
func TestPlugin(t *testing.T) {
	f := framework.Start(t, framework.Options{Members: []string{"cluster-1", "cluster-2", "cluster-3"}, WithSyncer: true, WithoutMemberCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p := newPlugin(t, f)
	m1, m2, m3 := f.Member("cluster-1"), f.Member("cluster-2"), f.Member("cluster-3")
	key1 := "default/default/default/cluster-1"

	t.Run("join with the least-privilege identity is Ready", func(t *testing.T) {
		// Through kubectl, which finds the plugin on the PATH.
		out, errOut, err := p.kubectl(t, "join", "cluster-1", "--member-context", "cluster-1",
			"--gateway-host", "127.0.0.1", "--gateway-port", "81", "--wait", "--timeout", "90s")
		require.NoError(t, err, "%s%s", out, errOut)
		assert.Contains(t, out, "cluster.flomesh.io/cluster-1 joined")
		assert.Contains(t, out, "cluster cluster-1 is Ready: key "+key1+", Kubernetes v1.37.2")

		out = p.run(t, "join", "cluster-2", "--member-context", "cluster-2", "--gateway-host", "127.0.0.1", "--gateway-port", "82", "--wait", "--timeout", "90s")
		assert.Contains(t, out, "cluster cluster-2 is Ready")

		c, kubeconfig, cfg := storedKubeconfig(t, ctx, f, "cluster-1")
		assert.Equal(t, int32(81), c.Spec.GatewayPort)
		assert.Equal(t, "cluster-1", c.Spec.CredentialsSecretRef.Name, "the credentials are in a Secret")
		uid, err := m1.Kube().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, string(uid.UID), c.Annotations["flomesh.io/member-uid"], "join records what the member is")
		require.Len(t, cfg.AuthInfos, 1)
		for _, u := range cfg.AuthInfos {
			assert.NotEmpty(t, u.Token)
			assert.Empty(t, u.ClientCertificateData, "no admin credential leaves the member")
			assert.Empty(t, u.ClientKeyData, "no admin credential leaves the member")
		}
		require.Len(t, cfg.Clusters, 1)
		for _, cl := range cfg.Clusters {
			assert.Equal(t, m1.Server(), cl.Server)
			assert.NotEmpty(t, cl.CertificateAuthorityData, "the CA is embedded")
		}
		review, err := clientOf(t, kubeconfig).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnReview, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Equal(t, "system:serviceaccount:fedmesh-system:fedmesh", review.Status.UserInfo.Username)

		role, err := m1.Kube().RbacV1().ClusterRoles().Get(ctx, "fedmesh:member", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, memberrbac.Rules(), role.Rules, "exactly the rules of pkg/memberrbac")
	})

	t.Run("exports reach the other members through fedmesh-syncer", func(t *testing.T) {
		deployHTTPBin(t, ctx, m1)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			si, err := m2.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
			if assert.NoError(c, err, "cluster-2 imports httpbin") && assert.Len(c, si.Spec.Ports, 1) && assert.Len(c, si.Spec.Ports[0].Endpoints, 1) {
				assert.Equal(c, key1, si.Spec.Ports[0].Endpoints[0].ClusterKey)
			}
			e, err := m1.Fedmesh().FlomeshV1alpha1().ServiceExports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
			if assert.NoError(c, err) {
				assert.True(c, meta.IsStatusConditionTrue(e.Status.Conditions, "Valid"), "the syncer wrote the export's conditions")
			}
			ings, err := m1.Kube().NetworkingV1().Ingresses("httpbin").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=fedmesh-syncer"})
			if assert.NoError(c, err) {
				assert.Len(c, ings.Items, 2, "the syncer exposes both exports of cluster-1")
			}
		}, 60*time.Second, 250*time.Millisecond)
		b, err := os.ReadFile(f.Syncer().Log())
		require.NoError(t, err)
		assert.NotContains(t, string(b), `User "system:serviceaccount:fedmesh-system:fedmesh" cannot`, "the syncer was never denied in a member")

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			out, errOut, err := p.try(t, "status")
			if !assert.NoError(c, err, errOut) {
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if assert.Len(c, lines, 3) {
				assert.Equal(c, []string{"NAME", "KEY", "READY", "REASON", "EXPORTS", "IMPORTS", "LAST", "HEARTBEAT"}, strings.Fields(lines[0]))
				assert.Equal(c, []string{"cluster-1", key1, "True", "Connected", "2", "0"}, strings.Fields(lines[1])[:6])
				assert.Equal(c, []string{"cluster-2", "default/default/default/cluster-2", "True", "Connected", "0", "2"}, strings.Fields(lines[2])[:6])
			}
		}, 20*time.Second, 250*time.Millisecond)

		out := p.run(t, "status", "service", "httpbin/httpbin")
		assert.Contains(t, out, "Ports:       8080/TCP")
		assert.Contains(t, out, "Consumers:   default/default/default/cluster-2")
		assert.Contains(t, out, "Policy:      none")
		assert.Regexp(t, key1+`\s+yes\s+8080→127.0.0.1:81/cluster-1/httpbin-mesh\s+True\s+False`, out)
	})

	t.Run("the member token can do its job and nothing else", func(t *testing.T) {
		_, kubeconfig, _ := storedKubeconfig(t, ctx, f, "cluster-1")
		token := clientOf(t, kubeconfig)
		admin := m1.Kube()
		denied := func(t *testing.T, err error, what string) {
			t.Helper()
			if assert.Error(t, err, what) {
				assert.True(t, apierrors.IsForbidden(err) || apierrors.IsInvalid(err), "%s: %v", what, err)
			}
		}
		byPolicy := func(t *testing.T, err error, policy, what string) {
			t.Helper()
			denied(t, err, what)
			if err != nil {
				assert.Contains(t, err.Error(), policy, "%s is refused by the admission policy, not RBAC", what)
			}
		}

		// CRDs: only fedmesh's three, only get and patch.
		dyn := dynamicOf(t, kubeconfig)
		other := unrelatedCRD("widgets.example.com")
		_, err := dynamic.NewForConfigOrDie(m1.Config()).Resource(membercrds.GVR).Create(ctx, other, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = dyn.Resource(membercrds.GVR).Patch(ctx, "widgets.example.com", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
		denied(t, err, "patching an unrelated CRD")
		_, err = dyn.Resource(membercrds.GVR).Get(ctx, "widgets.example.com", metav1.GetOptions{})
		denied(t, err, "reading an unrelated CRD")
		_, err = dyn.Resource(membercrds.GVR).Create(ctx, unrelatedCRD("gadgets.example.com"), metav1.CreateOptions{})
		denied(t, err, "creating a CRD")
		_, err = dyn.Resource(membercrds.GVR).Get(ctx, "serviceexports.flomesh.io", metav1.GetOptions{})
		assert.NoError(t, err, "fedmesh reads its own CRDs")

		// Ingresses: RBAC grants delete on every Ingress; the policy on
		// those fedmesh wrote only.
		_, err = admin.NetworkingV1().Ingresses("httpbin").Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "fedmesh-mine"},
			Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("pipy"), DefaultBackend: &networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "httpbin", Port: networkingv1.ServiceBackendPort{Number: 8080}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		err = token.NetworkingV1().Ingresses("httpbin").Delete(ctx, "fedmesh-mine", metav1.DeleteOptions{})
		byPolicy(t, err, memberrbac.ConfinePolicy, "deleting an Ingress fedmesh did not create")
		_, err = admin.NetworkingV1().Ingresses("httpbin").Get(ctx, "fedmesh-mine", metav1.GetOptions{})
		assert.NoError(t, err, "the Ingress is still there")

		labelled := func(name, class string) *networkingv1.Ingress {
			return &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{memberrbac.ManagedByLabel: memberrbac.ManagedByValue}},
				Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(class), DefaultBackend: &networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "httpbin", Port: networkingv1.ServiceBackendPort{Number: 8080}}}},
			}
		}
		_, err = token.NetworkingV1().Ingresses("httpbin").Create(ctx, labelled("fedmesh-other-class", "nginx"), metav1.CreateOptions{})
		byPolicy(t, err, memberrbac.ConfinePolicy, "an Ingress of another class")
		_, err = token.NetworkingV1().Ingresses("httpbin").Create(ctx, labelled("users-name", "pipy"), metav1.CreateOptions{})
		byPolicy(t, err, memberrbac.ConfinePolicy, "an Ingress without fedmesh's prefix")
		_, err = token.NetworkingV1().Ingresses("kube-system").Create(ctx, labelled("fedmesh-system-path", "pipy"), metav1.CreateOptions{})
		byPolicy(t, err, memberrbac.ConfinePolicy, "an Ingress in kube-system")
		// Nobody else may pass an object off as fedmesh's: not even the
		// member's admin.
		_, err = admin.NetworkingV1().Ingresses("httpbin").Create(ctx, labelled("fedmesh-forged", "pipy"), metav1.CreateOptions{})
		byPolicy(t, err, memberrbac.OwnershipPolicy, "the admin forging fedmesh's label")

		// Namespaces: only with fedmesh's label.
		_, err = token.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled"}}, metav1.CreateOptions{})
		byPolicy(t, err, memberrbac.ConfinePolicy, "a namespace without fedmesh's label")
		_, err = token.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fedmesh-made",
			Labels: map[string]string{memberrbac.ManagedByLabel: memberrbac.ManagedByValue}}}, metav1.CreateOptions{})
		assert.NoError(t, err, "a namespace with fedmesh's label")
		require.NoError(t, admin.CoreV1().Namespaces().Delete(ctx, "fedmesh-made", metav1.DeleteOptions{}))
		require.NoError(t, admin.NetworkingV1().Ingresses("httpbin").Delete(ctx, "fedmesh-mine", metav1.DeleteOptions{}))
	})

	t.Run("a permission removed from the ClusterRole makes the member Forbidden", func(t *testing.T) {
		role, err := m2.Kube().RbacV1().ClusterRoles().Get(ctx, "fedmesh:member", metav1.GetOptions{})
		require.NoError(t, err)
		var kept []rbacv1.PolicyRule
		for _, r := range role.Rules {
			if !(len(r.APIGroups) == 1 && r.APIGroups[0] == "" && len(r.Resources) == 1 && r.Resources[0] == "services") {
				kept = append(kept, r)
			}
		}
		require.Len(t, kept, len(role.Rules)-1)
		role.Rules = kept
		_, err = m2.Kube().RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
		require.NoError(t, err)

		c := waitReady(t, ctx, f, "cluster-2", metav1.ConditionFalse, 30*time.Second)
		cond := meta.FindStatusCondition(c.Status.Conditions, "Ready")
		assert.Equal(t, "Forbidden", cond.Reason)
		assert.Regexp(t, `may not (get|list|watch) services`, cond.Message)

		out := p.run(t, "status", "cluster-2", "-o", "wide")
		assert.Regexp(t, `cluster-2\s+default/default/default/cluster-2\s+False\s+Forbidden`, out)
		assert.Contains(t, out, "services")

		// join again restores the rule.
		out = p.run(t, "join", "cluster-2", "--member-context", "cluster-2", "--gateway-host", "127.0.0.1", "--gateway-port", "82", "--wait", "--timeout", "60s")
		assert.Contains(t, out, "cluster cluster-2 is Ready")
	})

	t.Run("rotate keeps the member Ready and revokes the old token", func(t *testing.T) {
		_, before, _ := storedKubeconfig(t, ctx, f, "cluster-2")
		out := p.run(t, "rotate", "cluster-2", "--member-context", "cluster-2", "--wait", "--timeout", "60s")
		assert.Contains(t, out, "cluster.flomesh.io/cluster-2 rotated")
		assert.Contains(t, out, "1 old token(s) revoked")
		assert.Contains(t, out, "cluster cluster-2 is Ready")
		c, after, cfg := storedKubeconfig(t, ctx, f, "cluster-2")
		assert.NotEqual(t, before, after)
		assert.Equal(t, int32(82), c.Spec.GatewayPort, "the rest of the spec stays")
		assert.Equal(t, m2.Server(), cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server)

		old := clientOf(t, before)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := old.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnReview, metav1.CreateOptions{})
			assert.True(c, apierrors.IsUnauthorized(err), "the old token is revoked: %v", err)
		}, 30*time.Second, 200*time.Millisecond, "kube-apiserver caches a token it authenticated for 10s")
		_, err := clientOf(t, after).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnReview, metav1.CreateOptions{})
		assert.NoError(t, err, "the new token works")
		waitReady(t, ctx, f, "cluster-2", metav1.ConditionTrue, 5*time.Second)
		// The imports keep flowing into cluster-2.
		_, err = m2.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
		assert.NoError(t, err)
	})

	t.Run("a revoked token is Unauthorized until rotate restores the member", func(t *testing.T) {
		secrets, err := m2.Kube().CoreV1().Secrets("fedmesh-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		revoked := 0
		for _, sec := range secrets.Items {
			if strings.HasPrefix(sec.Name, "fedmesh-token-") {
				require.NoError(t, m2.Kube().CoreV1().Secrets("fedmesh-system").Delete(ctx, sec.Name, metav1.DeleteOptions{}))
				revoked++
			}
		}
		require.Equal(t, 1, revoked, "one live token")
		c := waitReady(t, ctx, f, "cluster-2", metav1.ConditionFalse, 30*time.Second)
		assert.Equal(t, "Unauthorized", meta.FindStatusCondition(c.Status.Conditions, "Ready").Reason)
		out := p.run(t, "rotate", "cluster-2", "--member-context", "cluster-2", "--wait", "--timeout", "60s")
		assert.Contains(t, out, "cluster cluster-2 is Ready")
	})

	t.Run("rotate trusts nothing it reads from the Cluster", func(t *testing.T) {
		clusters := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters()
		secrets := f.ControlPlane.Kube().CoreV1().Secrets(members.DefaultSecretsNamespace)
		// Whoever may write the credentials points them elsewhere...
		sec, err := secrets.Get(ctx, "cluster-2", metav1.GetOptions{})
		require.NoError(t, err)
		sec.Data[members.SecretServerKey] = []byte(m3.Server())
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		require.NoError(t, err)
		// ...rotate reaches the member through the administrator's
		// kubeconfig and writes back the server that kubeconfig names.
		out := p.run(t, "rotate", "cluster-2", "--member-context", "cluster-2", "--wait", "--timeout", "60s")
		assert.Contains(t, out, "cluster cluster-2 is Ready")
		_, _, cfg := storedKubeconfig(t, ctx, f, "cluster-2")
		assert.Equal(t, m2.Server(), cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server)

		// A Cluster made to claim another member is refused, and keeps
		// its credentials.
		c, err := clusters.Get(ctx, "cluster-2", metav1.GetOptions{})
		require.NoError(t, err)
		other, err := m3.Kube().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		require.NoError(t, err)
		c.Annotations["flomesh.io/member-uid"] = string(other.UID)
		_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
		require.NoError(t, err)
		_, _, before := storedKubeconfig(t, ctx, f, "cluster-2")
		out, errOut, err := p.try(t, "rotate", "cluster-2", "--member-context", "cluster-2")
		require.Error(t, err, out)
		assert.Contains(t, errOut, "refusing to rotate: the Cluster cluster-2 was joined for another member")
		_, _, after := storedKubeconfig(t, ctx, f, "cluster-2")
		assert.Equal(t, before.AuthInfos, after.AuthInfos, "the refused rotate wrote nothing")
		// Put the record back.
		c, err = clusters.Get(ctx, "cluster-2", metav1.GetOptions{})
		require.NoError(t, err)
		uid, err := m2.Kube().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		require.NoError(t, err)
		c.Annotations["flomesh.io/member-uid"] = string(uid.UID)
		_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
		require.NoError(t, err)
	})

	t.Run("dry-run prints the Cluster with its token redacted", func(t *testing.T) {
		// By default the credentials go into a Secret: the Cluster has none.
		out := p.run(t, "join", "cluster-3", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1", "--gateway-port", "83", "--dry-run=client", "-o", "yaml")
		var c v1alpha1.Cluster
		require.NoError(t, yaml.UnmarshalStrict([]byte(out), &c), out)
		assert.Empty(t, c.Spec.Kubeconfig)
		assert.Equal(t, "cluster-3", c.Spec.CredentialsSecretRef.Name)
		assert.NotContains(t, out, "eyJ", "no JWT in the output")

		out = p.run(t, "join", "cluster-3", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1", "--gateway-port", "83", "--dry-run=client", "-o", "yaml", "--credentials=inline")
		c = v1alpha1.Cluster{}
		require.NoError(t, yaml.UnmarshalStrict([]byte(out), &c), out)
		assert.Equal(t, "Cluster", c.Kind)
		assert.Equal(t, "flomesh.io/v1alpha1", c.APIVersion)
		assert.Equal(t, "cluster-3", c.Name)
		cfg, err := clientcmd.Load([]byte(c.Spec.Kubeconfig))
		require.NoError(t, err)
		for _, u := range cfg.AuthInfos {
			assert.Equal(t, "<redacted>", u.Token)
		}
		assert.NotContains(t, out, "eyJ", "no JWT in the output")
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-3", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "nothing applied on the control plane")

		out = p.run(t, "join", "cluster-3", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1", "--dry-run=server", "-o", "yaml", "--credentials=inline")
		require.NoError(t, yaml.Unmarshal([]byte(out), &c), out)
		assert.Equal(t, int32(80), c.Spec.GatewayPort, "the server's answer")
		assert.Contains(t, c.Spec.Kubeconfig, "token: <redacted>")
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-3", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "a server dry run stores nothing")

		out = p.run(t, "join", "cluster-3", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1", "--dry-run=client", "-o", "yaml", "--show-secrets", "--credentials=inline")
		require.NoError(t, yaml.Unmarshal([]byte(out), &c))
		shown, err := clientcmd.RESTConfigFromKubeConfig([]byte(c.Spec.Kubeconfig))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(shown.BearerToken, "eyJ"), "the token is shown")
	})

	t.Run("deleting a Cluster revokes its token and its credentials Secret", func(t *testing.T) {
		p.run(t, "join", "cluster-3", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1", "--gateway-port", "83", "--wait", "--timeout", "60s")
		_, kubeconfig, _ := storedKubeconfig(t, ctx, f, "cluster-3")
		token := clientOf(t, kubeconfig)
		_, err := token.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnReview, metav1.CreateOptions{})
		require.NoError(t, err)

		// Not unjoin: the Cluster alone, as kubectl delete would.
		require.NoError(t, f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Delete(ctx, "cluster-3", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := token.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnReview, metav1.CreateOptions{})
			assert.True(c, apierrors.IsUnauthorized(err), "fedmesh-syncer revoked the member's token: %v", err)
		}, 40*time.Second, 250*time.Millisecond, "kube-apiserver caches a token it authenticated for 10s")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := f.ControlPlane.Kube().CoreV1().Secrets(members.DefaultSecretsNamespace).Get(ctx, "cluster-3", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "the credentials Secret goes with its Cluster: %v", err)
		}, 40*time.Second, 250*time.Millisecond)
	})

	t.Run("errors are one line and a non-zero exit", func(t *testing.T) {
		line := p.fail(t, "join", "cluster-9", "--member-context", "nope", "--gateway-host", "127.0.0.1")
		assert.Contains(t, line, `member kubeconfig: context "nope" does not exist`)

		line = p.fail(t, "status", "--context", "nope")
		assert.Contains(t, line, `control-plane kubeconfig: context "nope" does not exist`)

		// A member that does not answer: a port nobody listens on.
		unreachable := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["gone"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
		cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
		cfg.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "u"}
		cfg.CurrentContext = "gone"
		require.NoError(t, clientcmd.WriteToFile(*cfg, unreachable))
		start := time.Now()
		line = p.fail(t, "join", "cluster-9", "--member-kubeconfig", unreachable, "--gateway-host", "127.0.0.1")
		assert.Contains(t, line, "cannot reach the member at https://127.0.0.1:1")
		assert.Less(t, time.Since(start), 15*time.Second, "bounded")

		// A name taken by another member's Cluster.
		line = p.fail(t, "join", "cluster-1", "--member-context", "cluster-3", "--gateway-host", "127.0.0.1")
		uid1, err := m1.Kube().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Contains(t, line, `the name "cluster-1" is taken: Cluster cluster-1 (key `+key1+`) is another member, whose kube-system namespace has UID `+string(uid1.UID))
		// A member joined already, under another name.
		line = p.fail(t, "join", "cluster-9", "--member-context", "cluster-1", "--gateway-host", "127.0.0.1")
		assert.Contains(t, line, "is already joined as Cluster cluster-1")
		// Neither wrote anything.
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-9", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err))
		waitReady(t, ctx, f, "cluster-1", metav1.ConditionTrue, 5*time.Second)
	})

	t.Run("unjoin is refused while a policy targets the member", func(t *testing.T) {
		_, err := f.ControlPlane.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Create(ctx, &v1alpha1.GlobalTrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "httpbin"},
			Spec:       v1alpha1.GlobalTrafficPolicySpec{LbType: v1alpha1.FailOverLbType, Targets: []v1alpha1.TrafficTarget{{ClusterKey: key1}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		out := p.run(t, "status", "service", "httpbin/httpbin")
		assert.Contains(t, out, "Policy:      FailOver to "+key1)

		line := p.fail(t, "unjoin", "cluster-1", "--member-context", "cluster-1")
		assert.Contains(t, line, `clusters.flomesh.io "cluster-1" is forbidden`, "the admission's refusal, verbatim")
		assert.Contains(t, line, "httpbin/httpbin")
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		assert.NoError(t, err, "the Cluster stays")
		_, err = m1.Kube().CoreV1().ServiceAccounts("fedmesh-system").Get(ctx, "fedmesh", metav1.GetOptions{})
		assert.NoError(t, err, "and so does its identity")

		require.NoError(t, f.ControlPlane.Fedmesh().FlomeshV1alpha1().GlobalTrafficPolicies("httpbin").Delete(ctx, "httpbin", metav1.DeleteOptions{}))
	})

	t.Run("unjoin leaves nothing behind in the member", func(t *testing.T) {
		var out string
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			o, errOut, err := p.try(t, "unjoin", "cluster-1", "--member-context", "cluster-1")
			assert.NoError(c, err, "once the policy is gone: %s", errOut)
			out = o
		}, 20*time.Second, time.Second)
		assert.Contains(t, out, "cluster.flomesh.io/cluster-1 deleted")
		assert.Contains(t, out, "removed from the member: "+
			"ValidatingAdmissionPolicyBinding fedmesh-confine, ValidatingAdmissionPolicyBinding fedmesh-ownership, "+
			"ValidatingAdmissionPolicy fedmesh-confine, ValidatingAdmissionPolicy fedmesh-ownership, "+
			"ClusterRoleBinding fedmesh:member, ClusterRole fedmesh:member, "+
			"RoleBinding fedmesh-system/fedmesh:member, Role fedmesh-system/fedmesh:member")

		_, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "the Cluster is gone")
		kube := m1.Kube()
		for _, name := range []string{memberrbac.ConfinePolicy, memberrbac.OwnershipPolicy} {
			_, err = kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "ValidatingAdmissionPolicy %s: %v", name, err)
			_, err = kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "ValidatingAdmissionPolicyBinding %s: %v", name, err)
		}
		_, err = kube.RbacV1().ClusterRoleBindings().Get(ctx, "fedmesh:member", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "ClusterRoleBinding: %v", err)
		_, err = kube.RbacV1().ClusterRoles().Get(ctx, "fedmesh:member", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "ClusterRole: %v", err)
		_, err = kube.CoreV1().ServiceAccounts("fedmesh-system").Get(ctx, "fedmesh", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "ServiceAccount: %v", err)
		secrets, err := kube.CoreV1().Secrets("fedmesh-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Empty(t, secrets.Items, "token Secrets")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := kube.CoreV1().Namespaces().Get(ctx, "fedmesh-system", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "the namespace controller removes the namespace: %v", err)
		}, 20*time.Second, 100*time.Millisecond)
		ings, err := kube.NetworkingV1().Ingresses("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=fedmesh-syncer"})
		require.NoError(t, err)
		assert.Empty(t, ings.Items, "what fedmesh-syncer wrote is gone too")

		// The other members stop importing from it.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, err := m2.Fedmesh().FlomeshV1alpha1().ServiceImports("httpbin").Get(ctx, "httpbin", metav1.GetOptions{})
			assert.True(c, apierrors.IsNotFound(err), "cluster-2 no longer imports httpbin: %v", err)
		}, 30*time.Second, 250*time.Millisecond)

		// cluster-3 was prepared by the dry runs only: unjoin cleans it
		// although no Cluster exists.
		out = p.run(t, "unjoin", "cluster-3", "--member-context", "cluster-3")
		assert.Contains(t, out, "no Cluster cluster-3 on the control plane")
		_, err = m3.Kube().CoreV1().ServiceAccounts("fedmesh-system").Get(ctx, "fedmesh", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err))
	})

	join1 := []string{"join", "cluster-1", "--member-context", "cluster-1", "--gateway-host", "127.0.0.1", "--gateway-port", "81"}

	t.Run("join waits for a terminating fedmesh-system, writing nothing before", func(t *testing.T) {
		out := p.run(t, append(join1, "--wait", "--timeout", "60s")...)
		assert.Contains(t, out, "cluster cluster-1 is Ready")
		assert.NotContains(t, out, "waiting for namespace", "nothing to wait for")
		// A finalizer nobody removes holds the namespace in Terminating
		// after the unjoin, as a slow controller of the member would.
		cms := m1.Kube().CoreV1().ConfigMaps("fedmesh-system")
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold", Finalizers: []string{"fedmesh.test/hold"}}}, metav1.CreateOptions{})
		require.NoError(t, err)
		out = p.run(t, "unjoin", "cluster-1", "--member-context", "cluster-1")
		assert.Contains(t, out, "Namespace fedmesh-system")

		// The namespace controller reports on a deleted namespace 5s after
		// the deletion: by 8s it says what holds it.
		start := time.Now()
		line := p.fail(t, append(join1, "--timeout", "8s")...)
		assert.Contains(t, line, "namespace fedmesh-system of the member at "+m1.Server())
		assert.Contains(t, line, "is still terminating after 8s: ")
		assert.Contains(t, line, "NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: fedmesh.test/hold")
		assert.Contains(t, line, "nothing was changed")
		assert.Less(t, time.Since(start), 15*time.Second, "bounded by --timeout")
		_, err = f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().Get(ctx, "cluster-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no Cluster: %v", err)
		_, err = m1.Kube().RbacV1().ClusterRoles().Get(ctx, "fedmesh:member", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no ClusterRole: %v", err)
		_, err = m1.Kube().CoreV1().ServiceAccounts("fedmesh-system").Get(ctx, "fedmesh", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no ServiceAccount: %v", err)

		run := p.start(t, ctx, append(join1, "--wait", "--timeout", "60s")...)
		run.waitLine(t, "waiting for namespace fedmesh-system to finish terminating", 20*time.Second)
		_, err = cms.Patch(ctx, "hold", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
		require.NoError(t, err)
		out, err = run.wait(t)
		require.NoError(t, err)
		assert.Regexp(t, `namespace fedmesh-system is gone after \S+`, out)
		assert.Contains(t, out, "cluster.flomesh.io/cluster-1 joined")
		assert.Contains(t, out, "cluster cluster-1 is Ready")
		ns, err := m1.Kube().CoreV1().Namespaces().Get(ctx, "fedmesh-system", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "kubectl-fedmesh", ns.Labels["app.kubernetes.io/managed-by"], "join made the namespace again, as its own")
	})

	t.Run("unjoin, join, unjoin, join: the member ends with every import", func(t *testing.T) {
		// cluster-2 exports too; cluster-1 still exports its own httpbin.
		exportHTTPBin(t, ctx, m2)
		for i := range 2 {
			// Each join follows its unjoin at once: fedmesh-system is
			// still being deleted, or just gone.
			out := p.run(t, "unjoin", "cluster-1", "--member-context", "cluster-1")
			assert.Contains(t, out, "cluster.flomesh.io/cluster-1 deleted", "round %d", i)
			assert.Contains(t, out, "ServiceAccount fedmesh-system/fedmesh, Namespace fedmesh-system", "round %d: join made both", i)
			out = p.run(t, append(join1, "--wait", "--timeout", "90s")...)
			assert.Contains(t, out, "cluster cluster-1 is Ready", "round %d", i)
		}
		eventuallyImports(t, ctx, m1, map[string][]string{"httpbin": {key2}, "httpbin-cluster-2": {key2}}, 30*time.Second)
		eventuallyImports(t, ctx, m2, map[string][]string{"httpbin": {key1}, "httpbin-cluster-1": {key1}}, 10*time.Second)

		secrets, err := m1.Kube().CoreV1().Secrets("fedmesh-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Len(t, secrets.Items, 1, "one token, of the last join")
		clusters, err := f.ControlPlane.Fedmesh().FlomeshV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		var names []string
		for _, c := range clusters.Items {
			names = append(names, c.Name)
		}
		assert.ElementsMatch(t, []string{"cluster-1", "cluster-2"}, names)
	})
}

var authnReview = authenticationv1.SelfSubjectReview{}
