package activity

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/schedule"
)

// Change is one change of one org, as replicas exchange it. It merges into
// an org's state commutatively and idempotently, so the order changes
// arrive in, and how often, never matter:
//   - activity is a max of instants;
//   - each setting is last-writer-wins by its hybrid-logical-clock stamp
//     (on equal stamps the larger value wins, so every replica picks the
//     same);
//   - a delete at stamp D takes away every activity and setting no later
//     than D, and only those: what comes after D brings the org back.
//
// A change carries either Deleted or the rest.
type Change struct {
	Org string
	// Activity is the instant of the org's latest activity in the change
	// (zero: none). A change that creates an org carries its creation here.
	Activity time.Time
	// Settings written, each with the stamp it was written at.
	ScaleToZero   *bool
	ScaleToZeroAt hlc.Stamp
	IdleWindow    *time.Duration
	IdleWindowAt  hlc.Stamp
	// WarmSchedule is the org's warm schedule as schedule.Parse reads it
	// ("" clears it).
	WarmSchedule   *string
	WarmScheduleAt hlc.Stamp
	// PoolWeight is the org's weight in GPU pools (1: the default).
	PoolWeight   *int64
	PoolWeightAt hlc.Stamp
	// Deleted is the stamp of a delete (zero: not a delete).
	Deleted hlc.Stamp
}

// mergeActivity moves rec's last activity to at, if later and after the
// org's tombstone.
func mergeActivity(rec *record, at stamp, tomb hlc.Stamp) bool {
	if at <= stamp(tomb) || at <= rec.LastActivity {
		return false
	}
	rec.LastActivity = at
	return true
}

// mergeSettings applies c's settings to rec, each last-writer-wins, and
// ignores writes no later than the org's tombstone.
func mergeSettings(rec *record, c Change, tomb hlc.Stamp) (changed bool) {
	if v, at := c.ScaleToZero, c.ScaleToZeroAt; v != nil && at > tomb &&
		(at > rec.ScaleToZeroAt || (at == rec.ScaleToZeroAt && *v && !rec.ScaleToZero)) {
		changed = changed || rec.ScaleToZero != *v || rec.ScaleToZeroAt != at
		rec.ScaleToZero, rec.ScaleToZeroAt = *v, at
	}
	if v, at := c.IdleWindow, c.IdleWindowAt; v != nil && at > tomb &&
		(at > rec.IdleWindowAt || (at == rec.IdleWindowAt && *v > rec.IdleWindow)) {
		changed = changed || rec.IdleWindow != *v || rec.IdleWindowAt != at
		rec.IdleWindow, rec.IdleWindowAt = *v, at
	}
	if v, at := c.WarmSchedule, c.WarmScheduleAt; v != nil && at > tomb &&
		(at > rec.ScheduleAt || (at == rec.ScheduleAt && *v > rec.Schedule.String())) {
		// A schedule this scaler cannot read (a newer replica's) is left
		// out rather than half applied.
		if sched, err := schedule.Parse(*v); err == nil {
			changed = changed || rec.Schedule.String() != sched.String() || rec.ScheduleAt != at
			rec.Schedule, rec.ScheduleAt = sched, at
		}
	}
	if v, at := c.PoolWeight, c.PoolWeightAt; v != nil && at > tomb && *v >= 1 && *v <= MaxPoolWeight &&
		(at > rec.PoolWeightAt || (at == rec.PoolWeightAt && *v > rec.poolWeight())) {
		w := int32(*v)
		if w == 1 {
			w = 0 // the default: stored, and hashed, as never set
		}
		changed = changed || rec.PoolWeight != w || rec.PoolWeightAt != at
		rec.PoolWeight, rec.PoolWeightAt = w, at
	}
	return changed
}

// MaxPoolWeight bounds an org's pool weight: past it a weight is surely a
// typo, and a share's arithmetic stays far from overflow.
const MaxPoolWeight = 1000

// poolWeight is the org's weight in GPU pools.
func (r record) poolWeight() int64 {
	if r.PoolWeight == 0 {
		return 1
	}
	return int64(r.PoolWeight)
}

// mergeDelete applies a delete at d to rec: every activity and setting no
// later than d goes. It reports whether anything later keeps the org.
func mergeDelete(rec *record, d hlc.Stamp) (exists bool) {
	if rec.LastActivity <= stamp(d) {
		rec.LastActivity = 0
	}
	if rec.ScaleToZeroAt <= d {
		rec.ScaleToZero, rec.ScaleToZeroAt = true, 0
	}
	if rec.IdleWindowAt <= d {
		rec.IdleWindow, rec.IdleWindowAt = 0, 0
	}
	if rec.ScheduleAt <= d {
		rec.Schedule, rec.ScheduleAt = nil, 0
	}
	if rec.PoolWeightAt <= d {
		rec.PoolWeight, rec.PoolWeightAt = 0, 0
	}
	return rec.LastActivity != 0 || rec.ScaleToZeroAt != 0 || rec.IdleWindowAt != 0 || rec.ScheduleAt != 0 || rec.PoolWeightAt != 0
}

// creates reports whether c brings into being an org the store does not
// hold, whose tombstone (if any) is tomb.
func (c Change) creates(tomb hlc.Stamp) bool {
	return stampOf(c.Activity) > stamp(tomb) ||
		(c.ScaleToZero != nil && c.ScaleToZeroAt > tomb) || (c.IdleWindow != nil && c.IdleWindowAt > tomb) ||
		(c.WarmSchedule != nil && c.WarmScheduleAt > tomb) || (c.PoolWeight != nil && c.PoolWeightAt > tomb)
}

// Digest is a hash of every org's merged state (id, last activity,
// settings), with the number of orgs: replicas that agree have equal
// digests. Tombstones, first sightings and what woke an org are left out:
// they never change an answer.
func (s *Store) Digest() (sum [32]byte, orgs int) {
	type row struct {
		id  string
		rec record
	}
	var rows []row
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, e := range sh.orgs {
			rows = append(rows, row{id, e.rec})
		}
		sh.mu.Unlock()
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
	h := sha256.New()
	var b []byte
	for _, r := range rows {
		b = append(b[:0], r.id...)
		b = append(b, 0)
		b = binary.AppendVarint(b, int64(r.rec.LastActivity))
		b = binary.AppendVarint(b, int64(r.rec.IdleWindow))
		if r.rec.ScaleToZero {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		if r.rec.Schedule != nil { // orgs without one hash as before
			b = append(append(b, r.rec.Schedule.String()...), 0)
		}
		if r.rec.PoolWeight != 0 { // so do orgs of the default weight
			b = binary.AppendVarint(append(b, 'w'), int64(r.rec.PoolWeight))
		}
		h.Write(b)
	}
	copy(sum[:], h.Sum(nil))
	return sum, len(rows)
}
