package pubsubdepth

import (
	"math"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Any time series Cloud Monitoring could send, odd point types, missing
// labels and bad timestamps included, gives either nothing or one sane
// point for one well-named subscription; never a panic or a negative
// backlog.
func FuzzNewestPoint(f *testing.F) {
	series := func(labels map[string]string, points ...*monitoringpb.Point) []byte {
		b, err := proto.Marshal(&monitoringpb.TimeSeries{Resource: &monitoredres.MonitoredResource{Type: "pubsub_subscription", Labels: labels}, Points: points})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	at := func(t time.Time, v *monitoringpb.TypedValue) *monitoringpb.Point {
		return &monitoringpb.Point{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(t)}, Value: v}
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	ok := map[string]string{"project_id": "p", "subscription_id": "jobs"}
	f.Add(series(ok, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 7}})))
	f.Add(series(ok, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: math.NaN()}})))
	f.Add(series(ok, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: 1e300}})))
	f.Add(series(ok, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_StringValue{StringValue: "7"}})))
	f.Add(series(ok, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: -1}})))
	f.Add(series(ok, &monitoringpb.Point{Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 1}}}))
	f.Add(series(map[string]string{"project_id": "p"}, at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 1}})))
	f.Add(series(ok, at(time.Unix(1<<40, 0), &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_BoolValue{BoolValue: true}}),
		at(now, &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 3}})))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ts monitoringpb.TimeSeries
		if proto.Unmarshal(b, &ts) != nil {
			return
		}
		sub, p, found := newestPoint(&ts)
		if !found {
			return
		}
		labels := ts.GetResource().GetLabels()
		if sub != "projects/"+labels["project_id"]+"/subscriptions/"+labels["subscription_id"] || labels["project_id"] == "" || labels["subscription_id"] == "" {
			t.Fatalf("subscription %q from labels %v", sub, labels)
		}
		if p.Messages < 0 || p.At.IsZero() {
			t.Fatalf("point %+v", p)
		}
		for _, pt := range ts.GetPoints() {
			if e := pt.GetInterval().GetEndTime(); e.IsValid() && e.AsTime().After(p.At) && pointValue(pt) >= 0 {
				t.Fatalf("a newer usable point at %v was passed over for %v", e.AsTime(), p.At)
			}
		}
	})
}

// pointValue is the value newestPoint would use, or -1.
func pointValue(p *monitoringpb.Point) int64 {
	switch x := p.GetValue().GetValue().(type) {
	case *monitoringpb.TypedValue_Int64Value:
		return x.Int64Value
	case *monitoringpb.TypedValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || x.DoubleValue < 0 || x.DoubleValue > math.MaxInt64/2 {
			return -1
		}
		return int64(math.Ceil(x.DoubleValue))
	}
	return -1
}
