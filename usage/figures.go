// Package usage keeps the GPU-hours ledger: from every answer the scaler
// gives KEDA, the time each workload was active, the replica- and GPU-hours
// it asked for, what an always-on deployment (minReplicaCount: 1) would
// have used over the same time, and its wakes by cause. Figures are kept
// per hour in Badger, so a report can cover any recent window.
package usage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Cause is what turned a workload active.
type Cause uint8

// The causes of a wake.
const (
	CauseActivity Cause = iota // the org was used
	CauseHint                  // a producer said it enqueued work
	CauseBacklog               // the subscription's backlog
	CauseAdmin                 // an operator (scale to zero turned off, window lengthened)
	CauseSchedule              // a window of the org's warm schedule began
	CausePrewarm               // the keep-alive policy brought it up ahead of expected use
	causeCount
)

// Causes lists every cause, in the order of Figures.Wakes.
var Causes = [causeCount]Cause{CauseActivity, CauseHint, CauseBacklog, CauseAdmin, CauseSchedule, CausePrewarm}

func (c Cause) String() string {
	return [...]string{CauseActivity: "activity", CauseHint: "hint", CauseBacklog: "backlog", CauseAdmin: "admin",
		CauseSchedule: "schedule", CausePrewarm: "pre-warm"}[c]
}

// Cold reports whether a wake of this cause was a cold activation: demand
// (activity, a hint, a backlog) that found the workload down and had to
// wait for it. Schedules, pre-warms and operators bring it up ahead.
func (c Cause) Cold() bool { return c == CauseActivity || c == CauseHint || c == CauseBacklog }

// Figures are the ledger of one workload over some time. Durations are
// whole milliseconds: replica- and GPU-time are replicas (or GPUs) × time.
type Figures struct {
	Kind    string // the workload kind at the last answer
	Org     string
	GPUs    int64  // gpusPerReplica at the last answer
	GPUType string // the trigger's gpuType at the last answer

	Tracked         time.Duration // time the scaler was answering for it
	Active          time.Duration
	ReplicaTime     time.Duration // replicas asked for × time
	AlwaysOnReplica time.Duration // max(1, replicas) × time: minReplicaCount 1
	GPUTime         time.Duration // ReplicaTime × gpusPerReplica
	AlwaysOnGPU     time.Duration // AlwaysOnReplica × gpusPerReplica
	Wakes           [causeCount]int64
}

// Add adds o's sums to f and takes o's labels when f has none.
func (f *Figures) Add(o Figures) {
	if f.Kind == "" {
		f.Kind, f.Org, f.GPUs, f.GPUType = o.Kind, o.Org, o.GPUs, o.GPUType
	}
	f.Tracked += o.Tracked
	f.Active += o.Active
	f.ReplicaTime += o.ReplicaTime
	f.AlwaysOnReplica += o.AlwaysOnReplica
	f.GPUTime += o.GPUTime
	f.AlwaysOnGPU += o.AlwaysOnGPU
	for i := range f.Wakes {
		f.Wakes[i] += o.Wakes[i]
	}
}

// accrue adds d of the state s.
func (f *Figures) accrue(s state, d time.Duration) {
	f.Kind, f.Org, f.GPUs, f.GPUType = s.kind, s.org, s.gpus, s.gpuType
	f.Tracked += d
	onReplicas := max(1, s.replicas)
	if s.active {
		f.Active += d
	} else {
		s.replicas = 0
	}
	f.ReplicaTime += time.Duration(s.replicas) * d
	f.AlwaysOnReplica += time.Duration(onReplicas) * d
	f.GPUTime += time.Duration(s.replicas*s.gpus) * d
	f.AlwaysOnGPU += time.Duration(onReplicas*s.gpus) * d
}

// stored is f as written (whole milliseconds), so a report from memory
// and one from disk, or from another replica, give the same figures.
func (f *Figures) stored() Figures {
	o := *f
	for _, d := range []*time.Duration{&o.Tracked, &o.Active, &o.ReplicaTime, &o.AlwaysOnReplica, &o.GPUTime, &o.AlwaysOnGPU} {
		*d = d.Truncate(time.Millisecond)
	}
	return o
}

// Version 1 had the first four causes only. Version 2 may end with the
// GPU type, which scalers before it read past: the format stays 2, so an
// older scaler still opens the data dir.
const recordVersion = 2

// marshal writes the figures in a versioned binary form: a version byte,
// then uvarints (durations in milliseconds) and length-prefixed strings.
func (f Figures) marshal() []byte {
	b := []byte{recordVersion}
	b = appendString(b, f.Kind)
	b = appendString(b, f.Org)
	for _, v := range f.numbers() {
		b = binary.AppendUvarint(b, uint64(v))
	}
	if f.GPUType != "" {
		b = appendString(b, f.GPUType)
	}
	return b
}

func (f *Figures) numbers() []int64 {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	return append([]int64{f.GPUs, ms(f.Tracked), ms(f.Active), ms(f.ReplicaTime), ms(f.AlwaysOnReplica), ms(f.GPUTime), ms(f.AlwaysOnGPU)},
		f.Wakes[:]...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShort = errors.New("record ends early")

func unmarshal(b []byte) (Figures, error) {
	var f Figures
	if len(b) == 0 || b[0] < 1 || b[0] > recordVersion {
		return f, fmt.Errorf("usage record: unknown version (first byte %v)", b[:min(1, len(b))])
	}
	causes := map[byte]int{1: 4, 2: int(causeCount)}[b[0]]
	b = b[1:]
	var err error
	if f.Kind, b, err = readString(b); err != nil {
		return f, err
	}
	if f.Org, b, err = readString(b); err != nil {
		return f, err
	}
	var n [7 + causeCount]int64
	for i := range 7 + causes {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return f, fmt.Errorf("usage record: %w", errShort)
		}
		n[i], b = int64(v), b[k:]
	}
	d := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	f.GPUs, f.Tracked, f.Active, f.ReplicaTime, f.AlwaysOnReplica, f.GPUTime, f.AlwaysOnGPU = n[0], d(n[1]), d(n[2]), d(n[3]), d(n[4]), d(n[5]), d(n[6])
	copy(f.Wakes[:], n[7:])
	if len(b) > 0 {
		if f.GPUType, _, err = readString(b); err != nil {
			return f, err
		}
	}
	return f, nil
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, fmt.Errorf("usage record: %w", errShort)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}
