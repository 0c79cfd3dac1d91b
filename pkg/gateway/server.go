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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/fedmesh/fedmesh/apis/flomesh/validation"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	fedinformers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
)

// Options are the command-line options of fedmesh-gateway.
type Options struct {
	// Kubeconfig of the gateway's own member; empty means in-cluster.
	Kubeconfig string
	// ClusterKey is the member's key, region/zone/group/name.
	ClusterKey string
	// IngressClass is the class of the Ingresses the ingress serves.
	IngressClass string
	// The listeners' addresses; an empty one is not served.
	IngressAddress, EgressAddress, MetricsAddress string
	Proxy                                         ProxyOptions
	// ReadHeaderTimeout bounds the wait for a client's request headers,
	// IdleTimeout a kept-alive client connection's idleness.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long /readyz fails before the listeners stop
	// taking connections, so that whoever balances onto the gateway sees
	// it leave first.
	ShutdownDelay time.Duration
	ResyncPeriod  time.Duration
	Profiling     bool
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		IngressClass:      "pipy",
		IngressAddress:    ":8080",
		EgressAddress:     "127.0.0.1:15001",
		MetricsAddress:    "127.0.0.1:10359",
		Proxy:             DefaultProxyOptions(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ShutdownTimeout:   30 * time.Second,
		ResyncPeriod:      10 * time.Minute,
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the gateway's own member cluster, an identity that may only read (kubectl fedmesh gateway-kubeconfig); empty for the in-cluster configuration")
	fs.StringVar(&o.ClusterKey, "cluster-key", o.ClusterKey, "key of the member, region/zone/group/name as its Cluster's status says (required): the consumer of the egress, the serving cluster of the ingress")
	fs.StringVar(&o.IngressClass, "ingress-class", o.IngressClass, "ingressClassName of the Ingresses the ingress listener serves: fedmesh-syncer's --ingress-class")
	fs.StringVar(&o.IngressAddress, "ingress-address", o.IngressAddress, "address of the ingress listener, the Cluster's gatewayHost:gatewayPort as the other members reach it; empty serves none")
	fs.StringVar(&o.EgressAddress, "egress-address", o.EgressAddress, "address of the egress listener, an HTTP forward proxy for the federated services (curl -x http://ADDRESS http://NAME.NAMESPACE:PORT/); empty serves none")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "address serving /metrics, /healthz and /readyz over plain HTTP; keep it private; empty serves none")
	fs.StringVar(&o.Proxy.ClusterDomain, "cluster-domain", o.Proxy.ClusterDomain, "the members' DNS domain, as in NAME.NAMESPACE.svc.DOMAIN")
	fs.DurationVar(&o.Proxy.DialTimeout, "dial-timeout", o.Proxy.DialTimeout, "how long a connection to a backend may take")
	fs.DurationVar(&o.Proxy.ResponseHeaderTimeout, "response-header-timeout", o.Proxy.ResponseHeaderTimeout, "how long a backend may take to answer a request with its headers; the body streams for as long as it takes")
	fs.DurationVar(&o.Proxy.IdleConnTimeout, "backend-idle-timeout", o.Proxy.IdleConnTimeout, "how long a kept-alive backend connection may stay idle")
	fs.IntVar(&o.Proxy.MaxIdleConnsPerHost, "max-idle-conns-per-backend", o.Proxy.MaxIdleConnsPerHost, "kept-alive connections per backend")
	fs.DurationVar(&o.Proxy.EjectBase, "eject-base", o.Proxy.EjectBase, "how long a backend that refused a connection, failed or answered 5xx is left out; each further failure after it comes back doubles it")
	fs.DurationVar(&o.Proxy.EjectMax, "eject-max", o.Proxy.EjectMax, "the longest a failing backend is left out")
	fs.IntVar(&o.Proxy.MaxAttempts, "max-attempts", o.Proxy.MaxAttempts, "backends tried for a request without a body whose connections are refused")
	fs.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", o.ReadHeaderTimeout, "how long a client may take to send a request's headers")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", o.IdleTimeout, "how long a kept-alive client connection may stay idle")
	fs.IntVar(&o.MaxHeaderBytes, "max-header-bytes", o.MaxHeaderBytes, "the largest request headers accepted")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "on SIGTERM, how long /readyz fails before the listeners stop accepting")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "on SIGTERM, how long requests in flight may take to finish")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "how often the informers replay their objects")
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "serve /debug/pprof on the metrics address")
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if o.ClusterKey == "" {
		errs = append(errs, errors.New("--cluster-key is required"))
	} else if fe := validation.ValidateClusterKey(o.ClusterKey, nil); len(fe) > 0 {
		errs = append(errs, fmt.Errorf("--cluster-key: %v", fe.ToAggregate()))
	}
	if o.IngressAddress == "" && o.EgressAddress == "" {
		errs = append(errs, errors.New("--ingress-address and --egress-address are both empty: nothing to serve"))
	}
	for flag, addr := range map[string]string{"--ingress-address": o.IngressAddress, "--egress-address": o.EgressAddress, "--metrics-address": o.MetricsAddress} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", flag, addr, err))
		}
	}
	p := o.Proxy
	if p.DialTimeout <= 0 || p.ResponseHeaderTimeout <= 0 || p.IdleConnTimeout <= 0 || o.ReadHeaderTimeout <= 0 || o.IdleTimeout <= 0 || o.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	if p.EjectBase <= 0 || p.EjectMax < p.EjectBase {
		errs = append(errs, errors.New("need 0 < --eject-base <= --eject-max"))
	}
	if p.MaxAttempts < 1 || p.MaxIdleConnsPerHost < 1 || o.MaxHeaderBytes < 4096 {
		errs = append(errs, errors.New("--max-attempts and --max-idle-conns-per-backend must be at least 1, --max-header-bytes at least 4096"))
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, errors.New("--shutdown-delay must not be negative"))
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done, then drains: /readyz fails, the listeners
// stop accepting after ShutdownDelay, and requests in flight get up to
// ShutdownTimeout to finish.
func (o *Options) Run(ctx context.Context) error {
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "fedmesh-gateway"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	fed, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	RegisterMetrics()
	o.Proxy.Cluster = o.ClusterKey
	g := NewGateway(o.Proxy)
	w := NewWatcher(kube, fed, BuildOptions{Cluster: o.ClusterKey, IngressClass: o.IngressClass}, o.ResyncPeriod, g.SetTable)

	var ready, draining atomic.Bool
	servers := map[string]*http.Server{}
	listeners := map[string]net.Listener{}
	for name, s := range map[string]struct {
		addr string
		h    http.Handler
	}{ListenerIngress: {o.IngressAddress, g.Ingress()}, ListenerEgress: {o.EgressAddress, g.Egress()}, "metrics": {o.MetricsAddress, o.metricsHandler(&ready, &draining)}} {
		if s.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("%s listener: %w", name, err)
		}
		listeners[name] = l
		servers[name] = &http.Server{
			Handler:           s.h,
			ReadHeaderTimeout: o.ReadHeaderTimeout,
			IdleTimeout:       o.IdleTimeout,
			MaxHeaderBytes:    o.MaxHeaderBytes,
			ErrorLog:          nil,
		}
	}
	var wg sync.WaitGroup
	for name, srv := range servers {
		l := listeners[name]
		klog.InfoS("Serving", "listener", name, "address", l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Listener failed", "listener", name)
			}
		}()
	}

	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go func() {
		if w.Start(watchCtx) {
			ready.Store(true)
			klog.InfoS("Routing: the member's objects are read", "cluster", o.ClusterKey)
		}
	}()

	<-ctx.Done()
	klog.InfoS("Shutting down: draining")
	draining.Store(true)
	if o.ShutdownDelay > 0 {
		time.Sleep(o.ShutdownDelay)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	var errs []error
	for name, srv := range servers {
		if name == "metrics" {
			continue
		}
		if err := srv.Shutdown(drainCtx); err != nil {
			// Whatever still streams is cut.
			_ = srv.Close()
			errs = append(errs, fmt.Errorf("draining the %s listener: %w", name, err))
		}
	}
	if m := servers["metrics"]; m != nil {
		_ = m.Close()
	}
	wg.Wait()
	g.CloseIdleConnections()
	stopWatching()
	klog.InfoS("Stopped")
	return errors.Join(errs...)
}

func (o *Options) metricsHandler(ready, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !ready.Load():
			http.Error(w, "the member's objects are not read yet", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	if o.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (o *Options) restConfig() (*rest.Config, error) {
	if o.Kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
}

// Watcher keeps a gateway's table in step with its member's objects: it
// caches them by informers and computes a new table after every burst of
// changes, never per request.
type Watcher struct {
	opts        BuildOptions
	kubeFactory informers.SharedInformerFactory
	fedFactory  fedinformers.SharedInformerFactory
	synced      []cache.InformerSynced
	set         func(*Table)
	changed     chan struct{}
	lister      func() (Objects, error)
}

// NewWatcher returns a watcher of the member that kube and fed reach,
// which gives every table it computes to set.
func NewWatcher(kube kubernetes.Interface, fed versioned.Interface, opts BuildOptions, resync time.Duration, set func(*Table)) *Watcher {
	w := &Watcher{
		opts:        opts,
		kubeFactory: informers.NewSharedInformerFactoryWithOptions(kube, resync, informers.WithTransform(dropManagedFields)),
		fedFactory:  fedinformers.NewSharedInformerFactoryWithOptions(fed, resync, fedinformers.WithTransform(dropManagedFields)),
		set:         set,
		changed:     make(chan struct{}, 1),
	}
	svcs := w.kubeFactory.Core().V1().Services()
	slices := w.kubeFactory.Discovery().V1().EndpointSlices()
	ings := w.kubeFactory.Networking().V1().Ingresses()
	imps := w.fedFactory.Flomesh().V1alpha1().ServiceImports()
	gtps := w.fedFactory.Flomesh().V1alpha1().GlobalTrafficPolicies()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), slices.Informer(), ings.Informer(), imps.Informer(), gtps.Informer()} {
		_, _ = inf.AddEventHandler(handler)
		w.synced = append(w.synced, inf.HasSynced)
	}
	w.lister = func() (Objects, error) {
		var o Objects
		var err error
		all := labels.Everything()
		if o.Services, err = svcs.Lister().List(all); err != nil {
			return o, err
		}
		if o.EndpointSlices, err = slices.Lister().List(all); err != nil {
			return o, err
		}
		if o.Ingresses, err = ings.Lister().List(all); err != nil {
			return o, err
		}
		if o.Imports, err = imps.Lister().List(all); err != nil {
			return o, err
		}
		o.Policies, err = gtps.Lister().List(all)
		return o, err
	}
	return w
}

func (w *Watcher) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Start starts the informers, waits until they have synced and computes
// the first table, then computes a new one after every burst of changes
// until ctx is done. It reports whether the caches synced (false when ctx
// ended first).
func (w *Watcher) Start(ctx context.Context) bool {
	w.kubeFactory.Start(ctx.Done())
	w.fedFactory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		w.kubeFactory.Shutdown()
		w.fedFactory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
		return false
	}
	w.build()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.changed:
				w.build()
			}
		}
	}()
	return true
}

func (w *Watcher) build() {
	start := time.Now()
	objs, err := w.lister()
	if err != nil {
		klog.ErrorS(err, "Listing the member's objects")
		return
	}
	t := Build(w.opts, objs)
	w.set(t)
	tableBuildsTotal.Inc()
	tableBuildSeconds.Observe(time.Since(start).Seconds())
	routesGauge.WithLabelValues(ListenerEgress).Set(float64(t.egressRoutes()))
	routesGauge.WithLabelValues(ListenerIngress).Set(float64(len(t.exact) + len(t.prefix)))
	klog.V(4).InfoS("Routing table computed", "services", len(t.egress), "ingressPaths", len(t.exact)+len(t.prefix), "duration", time.Since(start))
}

func (t *Table) egressRoutes() int {
	n := 0
	for _, s := range t.egress {
		n += len(s.ports)
	}
	return n
}

// dropManagedFields keeps managedFields out of the caches: the gateway
// never reads them.
func dropManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}
