package activity

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/schedule"
)

// Imported is one org as a cutover's export has it: the table the
// scaler replaces kept each org's last activity and its settings.
type Imported struct {
	Org string
	// LastActivity is the org's last activity (zero: none known). It
	// merges by max, as any activity does: an import never moves an org's
	// activity back.
	LastActivity time.Time
	// Update holds the settings the row sets; they are written as any
	// admin change is, at this replica's clock.
	Update
}

// ImportResult is what an import did, or would do.
type ImportResult struct {
	// Created, Updated and Unchanged count the rows: an org new here, an
	// org whose activity or settings moved, an org left as it was.
	Created, Updated, Unchanged int
	// Dormant counts the rows whose org is dormant after the import.
	Dormant int
	// Changes says, for each row that creates or changes an org, what.
	Changes []ImportChange
}

// ImportChange is one row's effect.
type ImportChange struct {
	Org     string
	Created bool
	// Fields names each field that moves, as "field: old → new".
	Fields  []string
	Dormant bool
}

// Import creates or updates orgs from rows, all on disk (synced) and
// reported to OnChange when it returns; with dryRun it changes nothing
// and says what it would do. Rows are checked first: a bad one is an
// error naming it (its index) and the field, and nothing is changed.
// Orgs an import names are created whatever MaxOrgs says, as an admin's
// are. An org whose last activity is older than its window arrives
// dormant; one with no activity and no settings arrives dormant too,
// marked by its default scale-to-zero setting at the earliest stamp, so
// any admin change anywhere wins over the mark.
func (s *Store) Import(rows []Imported, dryRun bool) (ImportResult, error) {
	now := s.opts.Now()
	if err := s.checkImport(rows, now); err != nil {
		return ImportResult{}, err
	}
	at := s.clock.Now()
	var res ImportResult
	changes := make([]Change, 0, len(rows))
	for _, r := range rows {
		c, ch := s.importChange(r, at, now)
		changes = append(changes, c)
		switch {
		case ch.Created:
			res.Created++
		case len(ch.Fields) > 0:
			res.Updated++
		default:
			res.Unchanged++
		}
		if ch.Dormant {
			res.Dormant++
		}
		if ch.Created || len(ch.Fields) > 0 {
			res.Changes = append(res.Changes, ch)
		}
	}
	if dryRun {
		return res, nil
	}
	err := s.Apply(changes)
	// In force here even when the write failed (Apply leaves it to the
	// flusher): the other replicas hear of it either way.
	for _, c := range changes {
		s.changed(c)
	}
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

// checkImport refuses rows an import cannot take whole, naming the first
// bad one by its index, and spells each schedule one way.
func (s *Store) checkImport(rows []Imported, now time.Time) error {
	for i := range rows {
		r := &rows[i]
		if r.IdleWindow != nil && *r.IdleWindow < 0 {
			return &ImportError{Row: i, Field: "idle_window", Err: fmt.Errorf("is %s: expected 0 or more", *r.IdleWindow)}
		}
		switch {
		case r.LastActivity.After(now.Add(s.opts.MaxClockSkew)):
			return &ImportError{Row: i, Field: "last_activity_at", Err: fmt.Errorf("is %s, after this scaler's now (%s) by more than --max-clock-skew: expected an instant in the past",
				r.LastActivity.Format(time.RFC3339Nano), now.Format(time.RFC3339))}
		case r.LastActivity.After(now):
			r.LastActivity = now // the exporting database's clock a little ahead
		}
		if r.WarmSchedule != nil {
			sched, err := schedule.Parse(*r.WarmSchedule)
			if err != nil {
				return &ImportError{Row: i, Field: "warm_schedule", Err: err}
			}
			text := sched.String()
			r.WarmSchedule = &text
		}
	}
	return nil
}

// ImportError is a row an import refused: Row is its index in the rows.
type ImportError struct {
	Row   int
	Field string
	Err   error
}

func (e *ImportError) Error() string { return fmt.Sprintf("%s %v", e.Field, e.Err) }
func (e *ImportError) Unwrap() error { return e.Err }

// importChange is r as a Change stamped at, and what it does to the org
// as the store holds it now.
func (s *Store) importChange(r Imported, at hlc.Stamp, now time.Time) (Change, ImportChange) {
	c := r.Update.change(r.Org, at)
	if !r.LastActivity.IsZero() {
		c.Activity = r.LastActivity
	}
	sh := s.shard(r.Org)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tomb := sh.tombs[r.Org]
	e, held := sh.orgs[r.Org]
	if !held && !c.creates(tomb) {
		on := true // known, never active: marked as createIdle marks it
		c.ScaleToZero, c.ScaleToZeroAt = &on, tomb+1
	}
	before := record{FirstSeen: stampOf(now), ScaleToZero: true}
	if held {
		before = e.rec
	}
	after := before
	mergeActivity(&after, stampOf(c.Activity), tomb)
	mergeSettings(&after, c, tomb)
	s.settle(&after, now)
	ch := ImportChange{Org: r.Org, Created: !held, Dormant: !after.DormantSince.IsZero()}
	if held {
		ch.Fields = s.moved(before, after)
	}
	return c, ch
}

// moved names what differs between an org's two records.
func (s *Store) moved(a, b record) []string {
	var out []string
	diff := func(field string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s: %v → %v", field, x, y))
		}
	}
	if a.LastActivity != b.LastActivity {
		diff("last_activity_at", a.LastActivity.Time().UTC().Format(time.RFC3339), b.LastActivity.Time().UTC().Format(time.RFC3339))
	}
	diff("scale_to_zero_allowed", a.ScaleToZero, b.ScaleToZero)
	diff("idle_window", s.window(a), s.window(b))
	diff("warm_schedule", a.Schedule.String(), b.Schedule.String())
	diff("state", stateOf(a), stateOf(b))
	return out
}
