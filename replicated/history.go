package replicated

import (
	"time"

	"github.com/orgscaler/orgscaler/history"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
)

// Days is the activity history's days: the latest per org and day is
// queued.
func Days() replication.Kind[history.Day, *pb.ActivityDay] {
	type key struct {
		org string
		day int64
	}
	return replication.Kind[history.Day, *pb.ActivityDay]{
		Name: "history",
		Key:  func(d history.Day) (any, bool) { return key{d.Org, d.Day.Unix()}, true },
		Encode: func(d history.Day) *pb.ActivityDay {
			return &pb.ActivityDay{Org: d.Org, DayUnix: d.Day.Unix(), Minutes: history.Encode(&d.Bits)}
		},
		Decode: decodeDay,
		Batch:  func(m *pb.ChangeBatch) *[]*pb.ActivityDay { return &m.History },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.ActivityDay { return &m.History },
		Org:    func(d history.Day) string { return d.Org },
	}
}

// decodeDay reads a day; one not on a UTC midnight, or not readable, is
// dropped.
func decodeDay(m *pb.ActivityDay) (history.Day, bool) {
	day := time.Unix(m.GetDayUnix(), 0).UTC()
	if day.Truncate(24*time.Hour) != day {
		return history.Day{}, false
	}
	d := history.Day{Org: m.GetOrg(), Day: day}
	if history.Decode(m.GetMinutes(), &d.Bits) != nil {
		return history.Day{}, false // damaged, or a newer replica's encoding
	}
	return d, true
}
