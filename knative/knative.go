// Package knative keeps each org's Knative Services at the org's warmth,
// for teams whose pynodes are Knative Services rather than Deployments
// behind ScaledObjects: the autoscaling.knative.dev/min-scale annotation of
// every labelled Service's latest ready Revision is "1" (or the Service's
// orgscaler.io/warm-min-scale) while the org is warm and "0" while it is
// dormant. It patches the Revision, never the Service: no new Revision, no
// change of the Service's spec or generation, and Knative's autoscaler
// reads the annotation from the Revision (which it would restore over a
// patched PodAutoscaler). It watches, never polls; patches are idempotent,
// retried with backoff, and never on KEDA's answer path.
package knative

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/kubeevents"
)

// Labels and annotations the actuator reads and writes.
const (
	LabelOrg          = "orgscaler.io/org"            // on a Service: the org it belongs to
	LabelWarmMinScale = "orgscaler.io/warm-min-scale" // on a Service: min-scale while warm (default "1")
	LabelGPUs         = "orgscaler.io/gpus"           // on a Service: GPUs per replica, for the GPU-hours report (default 0)
	LabelGPUType      = "orgscaler.io/gpu-type"       // on a Service: the GPU type the report prices them by
	AnnotationMin     = "autoscaling.knative.dev/min-scale"
	labelService      = "serving.knative.dev/service" // on a Revision: its Service
	// On a Revision: the generation of its Configuration that made it, so
	// a Revision older than the latest ready one is known from one newer
	// but not ready yet (a deploy under way).
	labelGeneration = "serving.knative.dev/configurationGeneration"
)

// Resources of Knative Serving the actuator watches.
var (
	Services  = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	Revisions = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
)

// Key names a Service or a Revision.
type Key = types.NamespacedName

// Event reasons on a Service: those of a ScaledObject, and one for a
// Service the actuator will not act on.
const (
	ReasonOrgWoke    = kubeevents.ReasonOrgWoke
	ReasonOrgDormant = kubeevents.ReasonOrgDormant
	ReasonRefused    = "OrgScalerRefused"
)

// Recorder records an Event on a Service.
type Recorder interface {
	Service(svc Key, uid types.UID, eventtype, reason, note string)
}

// Options configure an Actuator.
type Options struct {
	Dynamic dynamic.Interface
	// Org returns org now; an org never seen is created (warm from now),
	// as a trigger naming it would (activity.Store.Sight). An error (too
	// many orgs) is shown as an Event, and tried again at the next sweep.
	Org func(org string) (activity.Org, error)
	// Events, when set, records what the actuator did on each Service.
	Events Recorder
	// Ledger, when set, is told of each Service's org and min-scale at
	// every reconcile and at least every ObserveEvery, and of a Service
	// deleted or unlabelled, for the GPU-hours ledger.
	Ledger     Ledger
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Ledger counts each Service's GPU-hours; usage.Ledger provides it.
type Ledger interface {
	ObserveKnative(svc string, org activity.Org, warm bool, gpus int64, gpuType string, minScale int64)
	ForgetKnative(svc string)
}

// ObserveEvery is how often every Service's warmth is told to the Ledger
// even when nothing changed, well inside the ledger's MaxGap.
const ObserveEvery = time.Minute

// service is what the actuator keeps of a Knative Service.
type service struct {
	uid      types.UID
	org      string
	warm     int64 // min-scale while warm
	gpus     int64
	gpuType  string
	latest   string // status.latestReadyRevisionName
	badLabel string // why a label cannot be used, if one cannot
}

// revision is what the actuator keeps of a Revision.
type revision struct {
	service    string
	minScale   string // "" when unset
	generation int64  // 0 when unknown
}

// Applied is what one Service's latest ready Revision says now, and when
// this replica last patched it.
type Applied struct {
	Service   Key
	Revision  string
	MinScale  string    // on the Revision now ("" when unset)
	PatchedAt time.Time // zero: never
}

// Actuator keeps Revisions' min-scale at their orgs' warmth.
type Actuator struct {
	o         Options
	log       *slog.Logger
	informers []cache.SharedIndexInformer
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[Key]
	metrics   *metrics
	// act is held (read) through each reconcile and (write) by Follow, so
	// once Follow returns no reconcile acts until Lead.
	act     sync.RWMutex
	leading bool // false: another replica leads the fleet and acts

	mu        sync.Mutex
	services  map[Key]*service
	revisions map[Key]map[string]*revision // by Service, then name
	byOrg     map[string]map[Key]bool
	patched   map[Key]time.Time // when this replica last patched each Service's Revision
}

// New returns an Actuator over the cluster dyn reaches; Run starts it. It
// fails when the cluster does not serve Knative's Services.
func New(ctx context.Context, o Options) (*Actuator, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := o.Dynamic.Resource(Services).List(cctx, metav1.ListOptions{Limit: 1}); err != nil {
		return nil, fmt.Errorf("--knative: cannot list Knative Services (serving.knative.dev/v1), is Knative Serving installed and may the scaler list them? %w", err)
	}
	a := &Actuator{
		o: o, log: o.Logger.With("component", "knative"), metrics: newMetrics(o.Registerer),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[Key](50*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[Key]{Name: "knative"}),
		services: map[Key]*service{}, revisions: map[Key]map[string]*revision{}, byOrg: map[string]map[Key]bool{}, patched: map[Key]time.Time{},
	}
	a.leading = true
	// Only labelled Services, and only Revisions that belong to a Service;
	// an unlabelled Service's Revisions are kept (a few fields each) but
	// never touched.
	svcs := dynamicinformer.NewFilteredDynamicInformer(o.Dynamic, Services, metav1.NamespaceAll, 0, cache.Indexers{},
		func(lo *metav1.ListOptions) { lo.LabelSelector = LabelOrg })
	revs := dynamicinformer.NewFilteredDynamicInformer(o.Dynamic, Revisions, metav1.NamespaceAll, 0, cache.Indexers{},
		func(lo *metav1.ListOptions) { lo.LabelSelector = labelService })
	for _, inf := range []struct {
		informer cache.SharedIndexInformer
		set      func(*unstructured.Unstructured)
		remove   func(*unstructured.Unstructured)
	}{{svcs.Informer(), a.setService, a.removeService}, {revs.Informer(), a.setRevision, a.removeRevision}} {
		if err := inf.informer.SetTransform(strip); err != nil {
			return nil, fmt.Errorf("knative informer: %w", err)
		}
		set, remove := inf.set, inf.remove
		if _, err := inf.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { set(obj.(*unstructured.Unstructured)) },
			UpdateFunc: func(_, obj any) { set(obj.(*unstructured.Unstructured)) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					remove(u)
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("knative informer: %w", err)
		}
		a.synced = append(a.synced, inf.informer.HasSynced)
	}
	a.informers = []cache.SharedIndexInformer{svcs.Informer(), revs.Informer()}
	return a, nil
}

// Run watches and reconciles until ctx ends, and returns once the
// informers and workers have stopped.
func (a *Actuator) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range a.informers {
		wg.Go(func() { inf.Run(ctx.Done()) })
	}
	if cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		a.mu.Lock()
		n := len(a.services)
		a.mu.Unlock()
		a.log.Info("read every labelled Knative Service: keeping their Revisions' min-scale", "services", n)
	}
	for range 4 {
		wg.Go(func() {
			for a.next(ctx) {
			}
		})
	}
	t := time.NewTicker(ObserveEvery)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
			a.enqueueAll()
		}
	}
	a.queue.ShutDown()
}

// Close stops the work queue of an Actuator whose Run never ran.
func (a *Actuator) Close() { a.queue.ShutDown() }

// OrgChanged reconciles org's Services now: it woke or went dormant.
// Never blocks.
func (a *Actuator) OrgChanged(org string) {
	a.mu.Lock()
	keys := make([]Key, 0, len(a.byOrg[org]))
	for k := range a.byOrg[org] {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.queue.Add(k)
	}
}

// Lead makes this replica act (a fleet.Duty: it leads the fleet; without
// a fleet it acts from the start) and reconciles every Service, as the
// last leader may have left one.
func (a *Actuator) Lead(string) {
	a.act.Lock()
	a.leading = true
	a.act.Unlock()
	a.enqueueAll()
}

// Follow stops acting, once the reconciles under way are done: another
// replica leads the fleet and acts once.
func (a *Actuator) Follow() {
	a.act.Lock()
	a.leading = false
	a.act.Unlock()
}

// Of lists org's Services with what their latest ready Revision says, for
// explain.
func (a *Actuator) Of(org string) []Applied {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Applied, 0, len(a.byOrg[org]))
	for k := range a.byOrg[org] {
		ap := Applied{Service: k, PatchedAt: a.patched[k]}
		if s := a.services[k]; s != nil && s.latest != "" {
			ap.Revision = s.latest
			if r := a.revisions[k][s.latest]; r != nil {
				ap.MinScale = r.minScale
			}
		}
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service.String() < out[j].Service.String() })
	return out
}

// Len is how many labelled Services the actuator keeps.
func (a *Actuator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.services)
}

func (a *Actuator) enqueueAll() {
	a.mu.Lock()
	keys := make([]Key, 0, len(a.services))
	for k := range a.services {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.queue.Add(k)
	}
}
