package pubsubdepth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func subsIn(projects []string, perProject int) []string {
	var subs []string
	for _, p := range projects {
		for i := range perProject {
			subs = append(subs, fmt.Sprintf("projects/%s/subscriptions/jobs-%03d", p, i))
		}
	}
	return subs
}

// firstPages counts the calls that start a query (paging aside).
func firstPages(reqs []*monitoringpb.ListTimeSeriesRequest) map[string]int {
	n := map[string]int{}
	for _, r := range reqs {
		if r.GetPageToken() == "" {
			n[r.GetName()]++
		}
	}
	return n
}

// Hundreds of subscriptions across three projects: exactly one query per
// project, paged, with a one_of filter naming them.
func TestMonitoringOneQueryPerProject(t *testing.T) {
	ms, mon := startMetricService(t)
	ms.PageSize = 40
	projects := []string{"proj-a", "proj-b", "proj-c"}
	subs := subsIn(projects, 100)
	now := time.Now()
	for i, sub := range subs {
		ms.Set(sub, int64(i), now.Add(-90*time.Second))
	}
	ms.Set("projects/proj-a/subscriptions/not-tracked", 99, now.Add(-90*time.Second))
	got, err := mon.Fetch(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(subs) {
		t.Fatalf("want %d points, got %d", len(subs), len(got))
	}
	for i, sub := range subs {
		if got[sub].Messages != int64(i) {
			t.Fatalf("%s: want %d, got %d", sub, i, got[sub].Messages)
		}
	}
	reqs := ms.Requests()
	queries := firstPages(reqs)
	if len(queries) != 3 || queries["projects/proj-a"] != 1 || queries["projects/proj-b"] != 1 || queries["projects/proj-c"] != 1 {
		t.Fatalf("want one query per project, got %v", queries)
	}
	if len(reqs) != 9 || mon.Calls() != 9 { // 100 series in pages of 40: 3 pages a project
		t.Fatalf("want 9 calls with paging (counted %d by the source), got %d", mon.Calls(), len(reqs))
	}
	f := reqs[0].GetFilter()
	for _, want := range []string{
		`metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"`,
		`resource.type = "pubsub_subscription"`,
		`resource.labels.subscription_id = one_of("jobs-000","jobs-001",`,
	} {
		if !strings.Contains(f, want) {
			t.Errorf("filter lacks %s:\n%s", want, f)
		}
	}
	iv := reqs[0].GetInterval()
	if d := iv.GetEndTime().AsTime().Sub(iv.GetStartTime().AsTime()); d != DefaultEmptyAfter+queryAhead {
		t.Errorf("want the 1h lookback and 5m ahead (a stale point must be seen, not missed; a clock a little behind Monitoring's must see the newest), got %s", d)
	}
	if reqs[0].GetView() != monitoringpb.ListTimeSeriesRequest_FULL {
		t.Errorf("want the FULL view, got %v", reqs[0].GetView())
	}
}

// With --gcp-project, every query goes to that one metrics scope.
func TestMonitoringScopeProject(t *testing.T) {
	ms, _ := startMetricService(t)
	ms.Scope = "scope-proj"
	mon, err := NewMonitoring(context.Background(), MonitoringOptions{Project: "scope-proj",
		Endpoint: ms.Addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	subs := subsIn([]string{"proj-a", "proj-b", "proj-c"}, 5)
	subs = append(subs, "projects/proj-d/subscriptions/jobs-000") // same id as others, other project
	for i, sub := range subs {
		ms.Set(sub, int64(i), time.Now())
	}
	got, err := mon.Fetch(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if got[sub].Messages != int64(i) {
			t.Fatalf("%s: want %d, got %+v", sub, i, got[sub])
		}
	}
	if q := firstPages(ms.Requests()); len(q) != 1 || q["projects/scope-proj"] != 1 {
		t.Fatalf("want one query to the scope project, got %v", q)
	}
}

// Past the filter length the query asks for the project's whole metric and
// drops the series nobody tracks.
func TestMonitoringLongFilterFallsBackToWholeProject(t *testing.T) {
	ms, mon := startMetricService(t)
	var subs []string
	for i := range 300 {
		subs = append(subs, fmt.Sprintf("projects/proj-a/subscriptions/a-rather-long-subscription-name-%04d", i))
	}
	for i, sub := range subs {
		ms.Set(sub, int64(i), time.Now())
	}
	ms.Set("projects/proj-a/subscriptions/untracked", 5, time.Now())
	got, err := mon.Fetch(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 {
		t.Fatalf("want the 300 tracked, got %d", len(got))
	}
	if _, ok := got["projects/proj-a/subscriptions/untracked"]; ok {
		t.Fatal("an untracked series was kept")
	}
	reqs := ms.Requests()
	if strings.Contains(reqs[0].GetFilter(), "one_of") || len(firstPages(reqs)) != 1 {
		t.Fatalf("want one whole-project query, got %d: %s", len(firstPages(reqs)), reqs[0].GetFilter())
	}
	if len(Filter([]string{"a", "b"})) > maxFilterLen {
		t.Fatal("a short filter is too long")
	}
}

func TestNewestPointOddSeries(t *testing.T) {
	at := func(sec int64) *monitoringpb.TimeInterval {
		return &monitoringpb.TimeInterval{EndTime: timestamppb.New(time.Unix(sec, 0))}
	}
	res := &monitoredres.MonitoredResource{Labels: map[string]string{"project_id": "p", "subscription_id": "s"}}
	tests := []struct {
		name string
		ts   *monitoringpb.TimeSeries
		ok   bool
		want int64
	}{
		{"no labels", &monitoringpb.TimeSeries{Points: []*monitoringpb.Point{{Interval: at(1), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 1}}}}}, false, 0},
		{"no points", &monitoringpb.TimeSeries{Resource: res}, false, 0},
		{"double rounds up", &monitoringpb.TimeSeries{Resource: res, Points: []*monitoringpb.Point{{Interval: at(1), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: 2.2}}}}}, true, 3},
		{"string skipped", &monitoringpb.TimeSeries{Resource: res, Points: []*monitoringpb.Point{{Interval: at(1), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_StringValue{StringValue: "x"}}}}}, false, 0},
		{"negative skipped", &monitoringpb.TimeSeries{Resource: res, Points: []*monitoringpb.Point{{Interval: at(1), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: -4}}}}}, false, 0},
		{"newest wins, in any order", &monitoringpb.TimeSeries{Resource: res, Points: []*monitoringpb.Point{
			{Interval: at(1), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 1}}},
			{Interval: at(3), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 3}}},
			{Interval: at(2), Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 2}}},
		}}, true, 3},
		{"missing end time skipped", &monitoringpb.TimeSeries{Resource: res, Points: []*monitoringpb.Point{{Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: 1}}}}}, false, 0},
	}
	for _, tt := range tests {
		sub, p, ok := newestPoint(tt.ts)
		if ok != tt.ok || (ok && (p.Messages != tt.want || sub != "projects/p/subscriptions/s")) {
			t.Errorf("%s: got %s %+v %v", tt.name, sub, p, ok)
		}
	}
}
