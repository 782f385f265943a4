// Package kubeevents records Kubernetes Events on the ScaledObjects the
// scaler serves, so `kubectl describe scaledobject` shows why a workload
// woke or slept next to KEDA's own Events: an org woke (and why), an org
// went dormant, the answer for a workload turned active or inactive, the
// backlog became unknown; and, with --knative, on the Knative Services whose
// min-scale it sets. Recording never blocks an answer to KEDA: work is
// queued and done in the background, and dropped (counted) when the queue
// is full.
package kubeevents

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"

	"github.com/orgscaler/orgscaler/activity"
)

// Controller is the reporting controller named on every Event.
const Controller = "orgscaler"

var scaledObjects = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// Event reasons, as `kubectl describe` shows them.
const (
	ReasonOrgWoke        = "OrgWoke"
	ReasonOrgDormant     = "OrgDormant"
	ReasonActive         = "ScalerActive"
	ReasonInactive       = "ScalerInactive"
	ReasonBacklogUnknown = "BacklogUnknown"
	// A GPU pool's: a member's share fell below what it asks, or came
	// back up to it; a pool's minimums alone exceed it.
	ReasonPoolCapped        = "PoolCapped"
	ReasonPoolRecovered     = "PoolRecovered"
	ReasonPoolOvercommitted = "PoolOvercommitted"
)

// Config returns the cluster's client config: kubeconfig when set, else
// in-cluster.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return c, nil
}

type key struct{ namespace, name string }

type item struct {
	to                              key
	ref                             *corev1.ObjectReference // set: the object, not a ScaledObject to look up
	eventtype, reason, action, note string
}

// Recorder records the scaler's Events.
type Recorder struct {
	log         *slog.Logger
	dyn         dynamic.Interface
	broadcaster events.EventBroadcaster
	rec         events.EventRecorder
	queue       chan item
	dropped     atomic.Int64
	following   atomic.Bool // another replica leads the fleet: it records the Events

	objectsOf func(org string) []types.NamespacedName // the ScaledObjects whose triggers name org

	mu    sync.Mutex
	quiet bool                // answers set the baseline, without Events
	state map[key]answerState // the last answer recorded per ScaledObject
	uids  map[key]types.UID
}

type answerState struct {
	active, blind bool
}

// New returns a Recorder talking to the cluster at cfg; Run starts it.
// objectsOf names the ScaledObjects whose triggers name an org (the
// cluster's, not only those KEDA has asked about yet): an org's wake and
// dormancy are recorded on each.
func New(cfg *rest.Config, log *slog.Logger, objectsOf func(org string) []types.NamespacedName) (*Recorder, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = Controller
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	return &Recorder{
		log: log.With("component", "kubeevents"), dyn: dyn, broadcaster: b,
		rec:   b.NewRecorder(runtime.NewScheme(), Controller),
		queue: make(chan item, 4096), objectsOf: objectsOf,
		state: map[key]answerState{}, uids: map[key]types.UID{},
	}, nil
}

// Run records Events until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	if err := r.broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("start recording events: %w", err)
	}
	defer r.broadcaster.Shutdown()
	for {
		select {
		case <-ctx.Done():
			return nil
		case it := <-r.queue:
			r.record(ctx, it)
		}
	}
}

// Close stops the broadcaster when Run was never called.
func (r *Recorder) Close() { r.broadcaster.Shutdown() }

// Dropped is how many Events were dropped because the queue was full.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Follow stops recording: another replica leads the fleet and records
// every Event once. What was kept per ScaledObject is dropped.
func (r *Recorder) Follow() {
	r.following.Store(true)
	r.mu.Lock()
	clear(r.state)
	r.mu.Unlock()
}

// Lead starts recording again, as the fleet's leader. baseline is called
// first (with the leader's first answers for every ScaledObject): what it
// answers is taken as the state each ScaledObject is in, and records no
// Event, since the last leader recorded how it got there.
func (r *Recorder) Lead(baseline func()) {
	r.mu.Lock()
	clear(r.state)
	r.quiet = true
	r.mu.Unlock()
	baseline()
	r.mu.Lock()
	r.quiet = false
	r.mu.Unlock()
	r.following.Store(false)
}

func (r *Recorder) enqueue(it item) {
	if r.following.Load() {
		return
	}
	select {
	case r.queue <- it:
	default:
		r.dropped.Add(1)
	}
}

// record resolves the ScaledObject's UID (kubectl describe matches Events
// by it) and hands the Event to client-go, which aggregates repeats.
func (r *Recorder) record(ctx context.Context, it item) {
	if it.ref != nil {
		r.rec.Eventf(it.ref, nil, it.eventtype, it.reason, it.action, "%s", it.note)
		return
	}
	uid, err := r.uid(ctx, it.to)
	if err != nil {
		r.log.Debug("no event: cannot read the ScaledObject", "namespace", it.to.namespace, "name", it.to.name, "err", err)
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject",
		Namespace: it.to.namespace, Name: it.to.name, UID: uid}
	r.rec.Eventf(ref, nil, it.eventtype, it.reason, it.action, "%s", it.note)
}

func (r *Recorder) uid(ctx context.Context, k key) (types.UID, error) {
	r.mu.Lock()
	uid, ok := r.uids[k]
	r.mu.Unlock()
	if ok {
		return uid, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	so, err := r.dyn.Resource(scaledObjects).Namespace(k.namespace).Get(cctx, k.name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("scaledobject %s/%s not found", k.namespace, k.name)
		}
		return "", err
	}
	r.mu.Lock()
	r.uids[k] = so.GetUID()
	r.mu.Unlock()
	return so.GetUID(), nil
}

// Answered is told of every answer the scaler gives KEDA for a
// ScaledObject; it records an Event when the answer changes. Cheap when
// nothing changed: reason is called only for an Event.
func (r *Recorder) Answered(namespace, name string, active, blind bool, reason func() string) {
	if namespace == "" || name == "" {
		return
	}
	k := key{namespace, name}
	now := answerState{active: active, blind: blind}
	r.mu.Lock()
	before, seen := r.state[k]
	r.state[k] = now
	quiet := r.quiet
	r.mu.Unlock()
	if quiet || (seen && before == now) {
		return
	}
	switch {
	case blind && (!seen || !before.blind):
		r.enqueue(item{to: k, eventtype: corev1.EventTypeWarning, reason: ReasonBacklogUnknown, action: "Answer", note: reason()})
	case !blind && active && (!seen || !before.active || before.blind):
		r.enqueue(item{to: k, eventtype: corev1.EventTypeNormal, reason: ReasonActive, action: "Answer", note: "active: " + reason()})
	case !blind && !active && (!seen || before.active || before.blind):
		r.enqueue(item{to: k, eventtype: corev1.EventTypeNormal, reason: ReasonInactive, action: "Answer", note: "inactive: " + reason()})
	}
}

// Forget drops what the recorder keeps for a ScaledObject that is gone.
func (r *Recorder) Forget(namespace, name string) {
	k := key{namespace, name}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, k)
	delete(r.uids, k)
}

// Tracked is how many ScaledObjects the recorder keeps state for.
func (r *Recorder) Tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.state)
}

// Transition records an org's wake or dormancy on every ScaledObject of
// its workloads, as activity.Subscriber.
func (r *Recorder) Transition(t activity.Transition) {
	if t.Woke {
		r.OrgWoke(t.Org, string(t.Reason), t.DormantSince)
		return
	}
	r.OrgDormant(t.Org, t.LastActivity, t.IdleWindow)
}

// OrgWoke records that org woke, and why, on every ScaledObject of its
// workloads.
func (r *Recorder) OrgWoke(org, why string, dormantSince time.Time) {
	note := fmt.Sprintf("org %s woke (%s)", org, why)
	if !dormantSince.IsZero() {
		note += fmt.Sprintf(" after %s dormant", time.Since(dormantSince).Round(time.Second))
	}
	r.toOrg(org, corev1.EventTypeNormal, ReasonOrgWoke, note)
}

// OrgDormant records that org went dormant.
func (r *Recorder) OrgDormant(org string, lastActivity time.Time, window time.Duration) {
	r.toOrg(org, corev1.EventTypeNormal, ReasonOrgDormant,
		fmt.Sprintf("org %s went dormant: no activity since %s (idle window %s)", org, lastActivity.UTC().Format(time.RFC3339), window))
}

func (r *Recorder) toOrg(org, eventtype, reason, note string) {
	if r.following.Load() {
		return
	}
	seen := map[key]bool{}
	for _, o := range r.objectsOf(org) {
		k := key{o.Namespace, o.Name}
		if !seen[k] { // once per object, however many of its triggers name org
			seen[k] = true
			r.enqueue(item{to: k, eventtype: eventtype, reason: reason, action: "Transition", note: note})
		}
	}
}

// Pool records a GPU pool's Event on a member's ScaledObject.
func (r *Recorder) Pool(namespace, name string, warning bool, reason, note string) {
	eventtype := corev1.EventTypeNormal
	if warning {
		eventtype = corev1.EventTypeWarning
	}
	r.enqueue(item{to: key{namespace, name}, eventtype: eventtype, reason: reason, action: "Share", note: note})
}

// Service records an Event on a Knative Service the scaler keeps at its
// org's warmth.
func (r *Recorder) Service(svc types.NamespacedName, uid types.UID, eventtype, reason, note string) {
	ref := &corev1.ObjectReference{APIVersion: "serving.knative.dev/v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: uid}
	r.enqueue(item{ref: ref, eventtype: eventtype, reason: reason, action: "MinScale", note: note})
}
