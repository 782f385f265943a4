package replication

import (
	"time"

	"github.com/orgscaler/orgscaler/history"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// History is where other replicas' activity days go, and what a snapshot
// sends of them; history.Store provides it.
type History interface {
	Merge([]history.Day) error
	Export(func([]history.Day) error) error
}

type dayKey struct {
	org string
	day int64
}

func dayKeyOf(d history.Day) dayKey { return dayKey{d.Org, d.Day.Unix()} }

// EnqueueDay queues a day of activity history that gained minutes here:
// history.Store's OnChange.
func (r *Replicator) EnqueueDay(d history.Day) { r.queue(func() { r.q.days.put(dayKeyOf(d), d) }) }

func daysToProto(ds []history.Day) []*pb.ActivityDay {
	out := make([]*pb.ActivityDay, len(ds))
	for i, d := range ds {
		out[i] = &pb.ActivityDay{Org: d.Org, DayUnix: d.Day.Unix(), Minutes: history.Encode(&d.Bits)}
	}
	return out
}

// daysFromProto reads days; one not on a UTC midnight, or not readable,
// is dropped.
func daysFromProto(in []*pb.ActivityDay) []history.Day {
	out := make([]history.Day, 0, len(in))
	for _, m := range in {
		day := time.Unix(m.GetDayUnix(), 0).UTC()
		if day.Truncate(24*time.Hour) != day {
			continue
		}
		d := history.Day{Org: m.GetOrg(), Day: day}
		if history.Decode(m.GetMinutes(), &d.Bits) != nil {
			continue // damaged, or a newer replica's encoding
		}
		out = append(out, d)
	}
	return out
}
