// Package monitoringtest serves Cloud Monitoring's MetricService API from a
// test, since Monitoring has no emulator: the real client talks to it over
// loopback. It answers ListTimeSeries from the series the test sets,
// honours the subscription_id one_of filter and the interval, and pages.
package monitoringtest

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MetricType is the backlog metric the server answers for.
const MetricType = "pubsub.googleapis.com/subscription/num_undelivered_messages"

// Server is a MetricService holding num_undelivered_messages series.
type Server struct {
	monitoringpb.UnimplementedMetricServiceServer
	// PageSize is the most series in one page (default 100).
	PageSize int

	// Scope, when set, is the project whose metrics scope holds every
	// series (as with --gcp-project); otherwise each subscription's own.
	Scope string
	// Addr is the server's HOST:PORT.
	Addr string

	mu       sync.Mutex
	series   map[string][]*monitoringpb.TimeSeries // by project queried
	requests []*monitoringpb.ListTimeSeriesRequest
	fail     error
	failFor  map[string]error         // by project queried
	hang     map[string]chan struct{} // by project queried: calls wait until closed
}

// Start serves a MetricService on loopback until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ms := &Server{PageSize: 100, series: map[string][]*monitoringpb.TimeSeries{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	monitoringpb.RegisterMetricServiceServer(srv, ms)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ms.Addr = lis.Addr().String()
	return ms
}

// Set records a backlog point for sub (projects/P/subscriptions/S)
// observed at at.
func (m *Server) Set(sub string, messages int64, at time.Time) {
	parts := strings.Split(sub, "/")
	if len(parts) != 4 {
		panic("monitoringtest: bad subscription name " + sub)
	}
	project, id := parts[1], parts[3]
	m.mu.Lock()
	defer m.mu.Unlock()
	key := project
	if m.Scope != "" {
		key = m.Scope
	}
	point := &monitoringpb.Point{
		Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(at), EndTime: timestamppb.New(at)},
		Value:    &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: messages}},
	}
	for _, ts := range m.series[key] {
		if l := ts.GetResource().GetLabels(); l["subscription_id"] == id && l["project_id"] == project {
			ts.Points = append([]*monitoringpb.Point{point}, ts.Points...) // newest first, as the API does
			return
		}
	}
	m.series[key] = append(m.series[key], &monitoringpb.TimeSeries{
		Metric:   nil,
		Resource: &monitoredres.MonitoredResource{Type: "pubsub_subscription", Labels: map[string]string{"project_id": project, "subscription_id": id}},
		Points:   []*monitoringpb.Point{point},
	})
}

// SetFail makes every call fail with err (nil: succeed again).
func (m *Server) SetFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// SetFailFor makes the queries of one project fail with err (nil: succeed).
func (m *Server) SetFailFor(project string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failFor == nil {
		m.failFor = map[string]error{}
	}
	m.failFor[project] = err
}

// Hang makes the queries of one project wait, as a slow or unreachable
// region does, until the caller gives up or release is called.
func (m *Server) Hang(project string) (release func()) {
	ch := make(chan struct{})
	m.mu.Lock()
	if m.hang == nil {
		m.hang = map[string]chan struct{}{}
	}
	m.hang[project] = ch
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.hang, project)
			m.mu.Unlock()
			close(ch)
		})
	}
}

// CallsFor is how many ListTimeSeries requests (pages included) one
// project has received.
func (m *Server) CallsFor(project string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.requests {
		if r.GetName() == "projects/"+project {
			n++
		}
	}
	return n
}

// Requests returns every ListTimeSeries request received, pages included.
func (m *Server) Requests() []*monitoringpb.ListTimeSeriesRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*monitoringpb.ListTimeSeriesRequest(nil), m.requests...)
}

var oneOf = regexp.MustCompile(`resource\.labels\.subscription_id = one_of\(([^)]*)\)`)

// ListTimeSeries implements the API.
func (m *Server) ListTimeSeries(ctx context.Context, req *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	m.mu.Lock()
	m.requests = append(m.requests, req)
	if ch := m.hang[strings.TrimPrefix(req.GetName(), "projects/")]; ch != nil {
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	if err := m.failFor[strings.TrimPrefix(req.GetName(), "projects/")]; err != nil {
		return nil, err
	}
	if !strings.Contains(req.GetFilter(), `metric.type = "`+MetricType+`"`) {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q lacks the metric type", req.GetFilter())
	}
	var allowed map[string]bool
	if mm := oneOf.FindStringSubmatch(req.GetFilter()); mm != nil {
		allowed = map[string]bool{}
		for _, q := range strings.Split(mm[1], ",") {
			id, err := strconv.Unquote(q)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "bad one_of value %s", q)
			}
			allowed[id] = true
		}
	}
	start, end := req.GetInterval().GetStartTime().AsTime(), req.GetInterval().GetEndTime().AsTime()
	var matched []*monitoringpb.TimeSeries
	for _, ts := range m.series[strings.TrimPrefix(req.GetName(), "projects/")] {
		if allowed != nil && !allowed[ts.GetResource().GetLabels()["subscription_id"]] {
			continue
		}
		var pts []*monitoringpb.Point
		for _, p := range ts.GetPoints() {
			if at := p.GetInterval().GetEndTime().AsTime(); !at.Before(start) && !at.After(end) {
				pts = append(pts, p)
			}
		}
		if len(pts) > 0 {
			matched = append(matched, &monitoringpb.TimeSeries{Resource: ts.GetResource(), Points: pts})
		}
	}
	offset := 0
	if tok := req.GetPageToken(); tok != "" {
		offset, _ = strconv.Atoi(tok)
	}
	resp := &monitoringpb.ListTimeSeriesResponse{}
	size := m.PageSize
	if size <= 0 {
		size = 100
	}
	endIdx := min(offset+size, len(matched))
	if offset < len(matched) {
		resp.TimeSeries = matched[offset:endIdx]
	}
	if endIdx < len(matched) {
		resp.NextPageToken = strconv.Itoa(endIdx)
	}
	return resp, nil
}
