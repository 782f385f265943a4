// Package tally is the fleet leader's own answer to every trigger in the
// cluster, as KEDA would be answered now. It tells the GPU-hours ledger of
// each trigger and the Events recorder of each ScaledObject, so every
// interval and every change of answer is counted once for the fleet, not
// once per replica KEDA's calls happen to reach. It is a fleet duty: it
// runs only while this replica leads.
package tally

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/trigger"
	"github.com/orgscaler/orgscaler/usage"
)

// Every is how often the leader answers every trigger; an org's wake or
// dormancy is tallied at once besides (Org).
const Every = 5 * time.Second

// Answerer answers a trigger as IsActive would; scaler.Server provides it.
type Answerer interface {
	Answer(namespace, name string, w trigger.Workload) (scaler.Verdict, error)
}

// Targets lists the cluster's triggers that name org ("": all);
// scaledobjects.Registry provides it.
type Targets interface {
	Targets(org string) []scaledobjects.Target
}

// Ledger counts answers; usage.Ledger provides it.
type Ledger interface {
	Observe(id string, a usage.Answer, now time.Time)
}

// Observer is told of each ScaledObject's answer; kubeevents.Recorder
// provides it. It leads with the tally: its baseline is the term's first
// tally, whose answers record no Event (the last leader recorded how each
// object got there).
type Observer interface {
	Answered(namespace, name string, active, blind bool, reason func() string)
	Lead(baseline func())
	Follow()
}

// Options configure a Tally.
type Options struct {
	Answers  Answerer
	Targets  Targets
	Ledger   Ledger
	Observer Observer // nil: none
}

// Tally answers every trigger while this replica leads.
type Tally struct {
	o       Options
	orgs    chan string // orgs that changed: tallied at once
	leading atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New returns a Tally that follows until Lead.
func New(o Options) *Tally {
	return &Tally{o: o, orgs: make(chan string, 4096)}
}

// Lead starts a term (fleet.Duty): the Observer takes the first tally as
// its baseline, then every trigger is tallied each Every, and an org's
// triggers whenever Org says it changed.
func (t *Tally) Lead(string) {
	if t.o.Observer != nil {
		t.o.Observer.Lead(func() { t.Run("") })
	} else {
		t.Run("")
	}
	t.stop = make(chan struct{})
	t.leading.Store(true)
	t.wg.Go(t.loop)
}

// Follow ends the term: once it returns nothing is tallied, and the
// Observer records nothing, until the next Lead.
func (t *Tally) Follow() {
	if t.leading.Swap(false) {
		close(t.stop)
		t.wg.Wait()
	}
	if t.o.Observer != nil {
		t.o.Observer.Follow()
	}
}

// Org asks for org's triggers to be tallied now (it woke or went dormant).
// It never blocks: with the queue full, the next tally of all counts it.
func (t *Tally) Org(org string) {
	if !t.leading.Load() {
		return
	}
	select {
	case t.orgs <- org:
	default:
	}
}

func (t *Tally) loop() {
	tick := time.NewTicker(Every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.Run("")
		case org := <-t.orgs:
			t.Run(org)
		}
	}
}

// verdict is a ScaledObject's answer as KEDA takes it: active when any of
// its triggers is.
type verdict struct {
	active, blind bool
	reason        func() string
}

// Run answers the triggers that name org ("": every trigger) now: each
// goes to the ledger, each ScaledObject once to the Observer.
func (t *Tally) Run(org string) {
	objects := map[scaledobjects.Key]*verdict{}
	var order []scaledobjects.Key
	for _, tg := range t.o.Targets.Targets(org) {
		v, err := t.o.Answers.Answer(tg.Key.Namespace, tg.Key.Name, tg.Workload)
		if err != nil {
			continue // KEDA gets the error too: nothing to count
		}
		a := v.Answer
		if !a.Blind() {
			t.o.Ledger.Observe(usage.ID(tg.Key.String(), tg.Workload.MetricName()), usage.AnswerOf(tg.Workload, a, v.Org), a.At())
		}
		obj := objects[tg.Key]
		if obj == nil {
			obj = &verdict{}
			objects[tg.Key] = obj
			order = append(order, tg.Key)
		}
		switch {
		case v.Active && !obj.active:
			obj.active, obj.blind, obj.reason = true, false, v.Reason
		case !obj.active && a.Blind() && !obj.blind:
			obj.blind, obj.reason = true, v.Reason
		case !obj.active && !obj.blind && obj.reason == nil:
			obj.reason = v.Reason
		}
	}
	if t.o.Observer == nil {
		return
	}
	for _, k := range order {
		obj := objects[k]
		t.o.Observer.Answered(k.Namespace, k.Name, obj.active, obj.blind, obj.reason)
	}
}
