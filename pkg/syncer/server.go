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

package syncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/apiserver/pkg/server/mux"
	apiserveroptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/server/routes"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/pkg/members"
)

// ServerOptions are the command-line options of fedmesh-syncer.
type ServerOptions struct {
	Syncer Options

	// Kubeconfig of the control plane; empty means in-cluster.
	Kubeconfig string

	// SecureServing serves /healthz, /readyz, /livez and /metrics over
	// HTTPS. Authentication and Authorization are delegated to the
	// control plane (TokenReview, SubjectAccessReview), as
	// kube-controller-manager does: the health endpoints are open to
	// anyone, /metrics only to who may get that non-resource URL.
	SecureServing  *apiserveroptions.SecureServingOptions
	Authentication *apiserveroptions.DelegatingAuthenticationOptions
	Authorization  *apiserveroptions.DelegatingAuthorizationOptions

	// Profiling serves /debug/pprof, behind the same authorization as
	// /metrics, as kube-controller-manager's --profiling does.
	Profiling bool

	LeaderElect          bool
	LeaderElectNamespace string
	LeaderElectName      string
	LeaderElectIdentity  string
	LeaseDuration        time.Duration
	RenewDeadline        time.Duration
	RetryPeriod          time.Duration
}

// The defaults of the member clients. A member's kube-apiserver takes
// several hundred writes a second; the ceiling is above that, so that the
// member's own API Priority and Fairness, whose 429s the limiter follows,
// sets the pace rather than a guess of ours.
const (
	DefaultWorkers     = 64
	DefaultMemberQPS   = 1000
	DefaultMemberBurst = 2000
)

// DefaultSecurePort is where fedmesh-syncer serves its health endpoints
// and metrics.
const DefaultSecurePort = 10358

// NewServerOptions returns the defaults of a production syncer.
func NewServerOptions() *ServerOptions {
	serving := apiserveroptions.NewSecureServingOptions()
	serving.BindPort = DefaultSecurePort
	// Without --tls-cert-file, a self-signed certificate: in memory, or
	// kept in --cert-dir when that is set.
	serving.ServerCert.CertDirectory = ""
	serving.ServerCert.PairName = "fedmesh-syncer"
	authz := apiserveroptions.NewDelegatingAuthorizationOptions()
	// Probes need no credentials; everything else, /metrics first, is
	// authorized by the control plane.
	authz.AlwaysAllowPaths = []string{"/healthz", "/readyz", "/livez"}
	return &ServerOptions{
		SecureServing:  serving,
		Authentication: apiserveroptions.NewDelegatingAuthenticationOptions(),
		Authorization:  authz,
		Syncer: Options{
			IngressClass:   "pipy",
			Workers:        DefaultWorkers,
			MemberQPS:      DefaultMemberQPS,
			MemberBurst:    DefaultMemberBurst,
			ResyncPeriod:   10 * time.Minute,
			MaxRetryDelay:  30 * time.Second,
			MemberTimeout:  10 * time.Second,
			CleanupTimeout: 2 * time.Minute,
			Members:        members.DefaultOptions(),
		},
		Profiling:            true,
		LeaderElect:          true,
		LeaderElectNamespace: "fedmesh",
		LeaderElectName:      "fedmesh-syncer",
		LeaseDuration:        15 * time.Second,
		RenewDeadline:        10 * time.Second,
		RetryPeriod:          2 * time.Second,
	}
}

// AddFlags adds the options to fs.
func (o *ServerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the control-plane cluster, where fedmesh-apiserver is registered; empty for the in-cluster configuration")
	fs.StringVar(&o.Syncer.IngressClass, "ingress-class", o.Syncer.IngressClass, "ingressClassName of the Ingresses that expose exports in their clusters; empty for the members' default class")
	fs.IntVar(&o.Syncer.Workers, "workers", o.Syncer.Workers, "workers per member cluster: services written into a member at once")
	fs.Float64Var(&o.Syncer.MemberQPS, "member-qps", o.Syncer.MemberQPS, "ceiling of the requests per second to each member cluster; a member's 429 halves the rate, which then grows back slowly")
	fs.IntVar(&o.Syncer.MemberBurst, "member-burst", o.Syncer.MemberBurst, "burst of requests to each member cluster above --member-qps")
	fs.DurationVar(&o.Syncer.ResyncPeriod, "resync-period", o.Syncer.ResyncPeriod, "how often every cache replays its objects to be checked again")
	fs.DurationVar(&o.Syncer.MaxRetryDelay, "max-retry-delay", o.Syncer.MaxRetryDelay, "the longest backoff of a failing write, and so the longest a member that returns waits to catch up")
	fs.DurationVar(&o.Syncer.MemberTimeout, "member-timeout", o.Syncer.MemberTimeout, "timeout of every request to a member cluster")
	fs.DurationVar(&o.Syncer.CleanupTimeout, "cleanup-timeout", o.Syncer.CleanupTimeout, "how long to try removing what was written into a cluster that left the federation")
	o.Syncer.Members.AddFlags(fs)
	o.Syncer.Namespaces.AddFlags(fs)
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "serve /debug/pprof on the secure port, to whom the control plane authorizes for that non-resource URL")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "run only while holding the lease, so that of several replicas one writes at a time")
	fs.StringVar(&o.LeaderElectNamespace, "leader-elect-namespace", o.LeaderElectNamespace, "namespace of the Lease")
	fs.StringVar(&o.LeaderElectName, "leader-elect-name", o.LeaderElectName, "name of the Lease")
	fs.StringVar(&o.LeaderElectIdentity, "leader-elect-identity", o.LeaderElectIdentity, "holder identity in the Lease; defaults to the host name and a random suffix")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long the other replicas wait after the last renewal before taking the lease")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader tries to renew before it gives up leading")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "how often replicas try to acquire or renew the lease")

	o.SecureServing.AddFlags(fs)
	o.Authentication.AddFlags(fs)
	o.Authorization.AddFlags(fs)
	// Both default to the control plane the syncer reads, rather than to
	// the in-cluster configuration only.
	fs.Lookup("secure-port").Usage = "port serving /healthz, /readyz, /livez and /metrics over HTTPS, with authentication and authorization delegated to the control plane; 0 serves nothing"
	fs.Lookup("cert-dir").Usage = "directory of the self-signed serving certificate made when --tls-cert-file is not given; empty keeps it in memory"
	fs.Lookup("authentication-kubeconfig").Usage = "kubeconfig of the cluster that reviews tokens (tokenreviews.authentication.k8s.io) and holds the client CAs (configmap kube-system/extension-apiserver-authentication); defaults to --kubeconfig, then to the in-cluster configuration"
	fs.Lookup("authorization-kubeconfig").Usage = "kubeconfig of the cluster that authorizes requests (subjectaccessreviews.authorization.k8s.io); defaults to --kubeconfig, then to the in-cluster configuration"
}

// Validate checks the options.
func (o *ServerOptions) Validate() error {
	var errs []error
	if o.Syncer.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers must be at least 1"))
	}
	if o.Syncer.MemberQPS < 1 || o.Syncer.MemberBurst < 1 {
		errs = append(errs, fmt.Errorf("--member-qps and --member-burst must be at least 1"))
	}
	if o.LeaderElect && !(o.LeaseDuration > o.RenewDeadline && o.RenewDeadline > o.RetryPeriod && o.RetryPeriod > 0) {
		errs = append(errs, fmt.Errorf("need --leader-elect-lease-duration > --leader-elect-renew-deadline > --leader-elect-retry-period > 0"))
	}
	if o.Syncer.MaxRetryDelay <= 0 || o.Syncer.MemberTimeout <= 0 || o.Syncer.CleanupTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--max-retry-delay, --member-timeout and --cleanup-timeout must be positive"))
	}
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	return errors.Join(errs...)
}

// Run runs the syncer until ctx is done. With leader election it syncs only
// while it holds the lease. When it loses the lease unexpectedly (the
// control plane, or its etcd, did not answer its renewals in time), it
// stops writing at once, as another replica may already be writing, waits
// until every write of its term has ended, and campaigns again with a
// fresh syncer: it recovers without a restart of the process, as
// fedmesh-apiserver does.
func (o *ServerOptions) Run(ctx context.Context) error {
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "fedmesh-syncer"
	fed, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	s, err := New(fed, kube, o.Syncer)
	if err != nil {
		return err
	}

	var watchdog *leaderelection.HealthzAdaptor
	if o.LeaderElect {
		watchdog = leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	}
	if err := o.serve(ctx, watchdog); err != nil {
		return err
	}

	if !o.LeaderElect {
		leading.Set(1)
		runSyncer(ctx, s)
		return nil
	}

	id := o.LeaderElectIdentity
	if id == "" {
		host, _ := os.Hostname()
		id = host + "_" + string(uuid.NewUUID())
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaderElectNamespace, Name: o.LeaderElectName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	klog.InfoS("Waiting for the lease", "lease", o.LeaderElectNamespace+"/"+o.LeaderElectName, "identity", id)
	for o.lead(ctx, s, id, lock, watchdog) && ctx.Err() == nil {
		klog.InfoS("Lost the lease; stopped writing, waiting for the lease again", "identity", id)
		// A syncer's queues end with its term: the next term starts
		// from fresh caches, as a restarted process would.
		if s, err = New(fed, kube, o.Syncer); err != nil {
			return err
		}
	}
	return nil
}

// lead campaigns for the lease and runs s while it holds it. It returns
// when ctx is done, or once it has lost the lease, with lost set, and
// every write of s has ended.
func (o *ServerOptions) lead(ctx context.Context, s *Syncer, id string, lock resourcelock.Interface, watchdog *leaderelection.HealthzAdaptor) (lost bool) {
	var started atomic.Bool
	// ran is closed when the term's syncer has stopped.
	ran := make(chan struct{})
	// The lease is released only after the syncer has stopped writing:
	// the elector's context outlives ctx until the term ends, so that a
	// replica taking over never overlaps with this one's last writes.
	electorCtx, stopElector := context.WithCancel(context.Background())
	defer stopElector()
	stopIfIdle := context.AfterFunc(ctx, func() {
		if !started.Load() {
			stopElector()
		}
	})
	defer stopIfIdle()
	leaderelection.RunOrDie(electorCtx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        watchdog,
		Name:            o.LeaderElectName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leaseCtx context.Context) {
				started.Store(true)
				defer close(ran)
				defer stopElector()
				if ctx.Err() != nil {
					return
				}
				klog.InfoS("Became the leader", "identity", id)
				leading.Set(1)
				// Every write is made with this context, which ends with
				// the lease: a lost lease cancels the writes in flight.
				runCtx, cancel := context.WithCancel(leaseCtx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				runSyncer(runCtx, s)
			},
			OnStoppedLeading: func() {
				leading.Set(0)
				if ctx.Err() != nil {
					klog.InfoS("Stopped leading on request", "identity", id)
					return
				}
				klog.ErrorS(nil, "Lost the lease", "identity", id)
				lost = true
			},
			OnNewLeader: func(identity string) {
				if identity != id {
					klog.InfoS("Another replica leads", "leader", identity)
				}
			},
		},
	})
	if started.Load() {
		<-ran
	}
	return lost
}

// runSyncer runs s until ctx is done, deleting meanwhile the metric series
// of the members that leave.
func runSyncer(ctx context.Context, s *Syncer) {
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go s.forgetDepartedMembers(sweepCtx, memberSeriesSweep)
	s.Run(ctx)
}

func (o *ServerOptions) restConfig() (*rest.Config, error) {
	if o.Kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
}

// serve starts the HTTPS endpoints, as kube-controller-manager serves its
// own: a request is authenticated by client certificate (the CAs of the
// control plane's extension-apiserver-authentication ConfigMap), by the
// aggregator's request headers, or by a bearer token the control plane
// reviews, and authorized by a SubjectAccessReview, so that reading
// /metrics takes "get" on that non-resource URL. /healthz, /readyz and
// /livez are open: /healthz and /livez fail when the leader could not
// renew its lease for a while; /readyz passes once the process is up,
// leader or standby, since a standby is a healthy replica.
func (o *ServerOptions) serve(ctx context.Context, watchdog *leaderelection.HealthzAdaptor) error {
	if o.SecureServing.BindPort == 0 && o.SecureServing.Listener == nil {
		return nil
	}
	if o.Authentication.RemoteKubeConfigFile == "" {
		o.Authentication.RemoteKubeConfigFile = o.Kubeconfig
	}
	if o.Authorization.RemoteKubeConfigFile == "" {
		o.Authorization.RemoteKubeConfigFile = o.Kubeconfig
	}
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return fmt.Errorf("creating a self-signed serving certificate: %w", err)
	}
	var serving *genericapiserver.SecureServingInfo
	if err := o.SecureServing.ApplyTo(&serving); err != nil {
		return err
	}
	var authn genericapiserver.AuthenticationInfo
	if err := o.Authentication.ApplyTo(&authn, serving, nil); err != nil {
		return fmt.Errorf("delegated authentication: %w", err)
	}
	var authz genericapiserver.AuthorizationInfo
	if err := o.Authorization.ApplyTo(&authz); err != nil {
		return fmt.Errorf("delegated authorization: %w", err)
	}

	m := mux.NewPathRecorderMux("fedmesh-syncer")
	var checks []healthz.HealthChecker
	if watchdog != nil {
		checks = append(checks, watchdog)
	}
	healthz.InstallHandler(m, checks...)
	healthz.InstallLivezHandler(m, checks...)
	healthz.InstallReadyzHandler(m)
	m.Handle("/metrics", legacyregistry.Handler())
	if o.Profiling {
		routes.Profiling{}.Install(m)
	}

	_, stopped, err := serving.Serve(handlerChain(m, &authn, &authz), 0, ctx.Done())
	if err != nil {
		return err
	}
	go func() {
		<-stopped
		klog.V(2).InfoS("Stopped serving health and metrics")
	}()
	klog.InfoS("Serving /healthz, /readyz, /livez and /metrics over HTTPS", "address", serving.Listener.Addr().String())
	return nil
}

// handlerChain puts authentication and authorization in front of h, the
// filters of kube-controller-manager's secure port: a request that fails
// authentication gets 401, one that is not authorized 403.
func handlerChain(h http.Handler, authn *genericapiserver.AuthenticationInfo, authz *genericapiserver.AuthorizationInfo) http.Handler {
	resolver := &apirequest.RequestInfoFactory{}
	h = genericapifilters.WithAuthorization(h, authz.Authorizer, scheme.Codecs)
	h = genericapifilters.WithAuthentication(h, authn.Authenticator, genericapifilters.Unauthorized(scheme.Codecs), nil, nil)
	h = genericapifilters.WithRequestInfo(h, resolver)
	h = genericapifilters.WithCacheControl(h)
	h = genericfilters.WithHTTPLogging(h)
	return genericfilters.WithPanicRecovery(h, resolver)
}
