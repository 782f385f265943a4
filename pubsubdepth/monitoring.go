package pubsubdepth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MetricType is the Cloud Monitoring metric of a subscription's backlog.
const MetricType = "pubsub.googleapis.com/subscription/num_undelivered_messages"

// maxFilterLen is the longest one_of filter sent. Google documents no
// limit on a filter's length or on one_of's values; a limit of about
// 11,000 characters has been measured against the API (docs/DEPTH.md), so
// past 8,000 the query asks for the project's whole metric instead.
const maxFilterLen = 8000

// MonitoringOptions configure the Cloud Monitoring source.
type MonitoringOptions struct {
	// Project, when set, is the project every query goes to (a metrics
	// scope that sees every subscription's project); otherwise each
	// subscription's own project is queried.
	Project string
	// Endpoint overrides the API's address (HOST:PORT).
	Endpoint string
	// Insecure dials Endpoint in plaintext without credentials: for a local
	// MetricService only.
	Insecure bool
	// Lookback is how far back a query looks for the newest point: the
	// tracker's EmptyAfter, so a point older than the max age is seen (and
	// makes the backlog blind) instead of being missed (and read as empty).
	Lookback time.Duration
	Now      func() time.Time
}

// Monitoring reads backlogs from Cloud Monitoring, with one ListTimeSeries
// query (paged) per project per fetch, whatever the number of subscriptions.
type Monitoring struct {
	client *monitoring.MetricClient
	opts   MonitoringOptions
	calls  atomic.Int64
}

// NewMonitoring dials Cloud Monitoring with Application Default
// Credentials, or as opts say.
func NewMonitoring(ctx context.Context, opts MonitoringOptions) (*Monitoring, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lookback <= 0 {
		opts.Lookback = DefaultEmptyAfter
	}
	m := &Monitoring{opts: opts}
	// Count the calls the API sees: one per page.
	co := []option.ClientOption{option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			m.calls.Add(1)
			return invoker(ctx, method, req, reply, cc, o...)
		}))}
	if opts.Endpoint != "" {
		co = append(co, option.WithEndpoint(opts.Endpoint))
	}
	if opts.Insecure {
		if opts.Endpoint == "" {
			return nil, errors.New("monitoring: insecure needs an endpoint: it is for a local MetricService only")
		}
		co = append(co, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	c, err := monitoring.NewMetricClient(ctx, co...)
	if err != nil {
		return nil, fmt.Errorf("cloud monitoring client: %w", err)
	}
	m.client = c
	return m, nil
}

// Close closes the client.
func (m *Monitoring) Close() error { return m.client.Close() }

// Calls is the number of ListTimeSeries calls made (pages included).
func (m *Monitoring) Calls() int64 { return m.calls.Load() }

// Group implements Grouper: one query per project queried.
func (m *Monitoring) Group(sub string) string {
	if m.opts.Project != "" {
		return m.opts.Project
	}
	project, _, _ := ParseName(sub)
	return project
}

// Fetch implements Source.
func (m *Monitoring) Fetch(ctx context.Context, subs []string) (map[string]Point, error) {
	byProject := map[string][]string{} // subscription ids, by project queried
	members := map[string][]string{}   // full names, by project queried
	want := make(map[string]bool, len(subs))
	for _, sub := range subs {
		project, id, err := ParseName(sub)
		if err != nil {
			return nil, err
		}
		want[sub] = true
		if m.opts.Project != "" {
			project = m.opts.Project
		}
		byProject[project] = append(byProject[project], id)
		members[project] = append(members[project], sub)
	}
	projects := make([]string, 0, len(byProject))
	for p := range byProject {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	out := make(map[string]Point, len(subs))
	failed := map[string]error{}
	for _, project := range projects {
		if err := m.query(ctx, project, byProject[project], want, out); err != nil {
			for _, sub := range members[project] {
				failed[sub] = err
			}
		}
	}
	if len(failed) > 0 {
		return out, &FetchError{bySub: failed}
	}
	return out, nil
}

// Filter is the filter of one project's query: the tracked subscription
// ids with one_of, or, where that would pass the API's limits, the
// project's whole metric (the other series are then dropped).
func Filter(ids []string) string {
	base := fmt.Sprintf(`metric.type = %q AND resource.type = "pubsub_subscription"`, MetricType)
	uniq := dedupe(ids)
	quoted := make([]string, len(uniq))
	for i, id := range uniq {
		quoted[i] = strconv.Quote(id)
	}
	f := base + " AND resource.labels.subscription_id = one_of(" + strings.Join(quoted, ",") + ")"
	if len(f) > maxFilterLen {
		return base
	}
	return f
}

func dedupe(ids []string) []string {
	s := append([]string(nil), ids...)
	sort.Strings(s)
	out := s[:0]
	for i, id := range s {
		if i == 0 || id != s[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// queryAhead ends each query a little past this clock's now, so a node
// whose clock is a few minutes behind Monitoring's still sees the newest
// points (the tracker ages a point stamped ahead from when it came).
const queryAhead = 5 * time.Minute

func (m *Monitoring) query(ctx context.Context, project string, ids []string, want map[string]bool, out map[string]Point) error {
	now := m.opts.Now()
	req := &monitoringpb.ListTimeSeriesRequest{
		Name:   "projects/" + project,
		Filter: Filter(ids),
		Interval: &monitoringpb.TimeInterval{
			StartTime: timestamppb.New(now.Add(-m.opts.Lookback)),
			EndTime:   timestamppb.New(now.Add(queryAhead)),
		},
		View: monitoringpb.ListTimeSeriesRequest_FULL,
	}
	it := m.client.ListTimeSeries(ctx, req)
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list time series of project %s: %w", project, err)
		}
		sub, p, ok := newestPoint(ts)
		if !ok || !want[sub] {
			continue
		}
		if old, seen := out[sub]; !seen || p.At.After(old.At) {
			out[sub] = p
		}
	}
}

// newestPoint reads a series' subscription and its newest point. Series
// with missing labels, no points or values of the wrong type are skipped.
func newestPoint(ts *monitoringpb.TimeSeries) (string, Point, bool) {
	labels := ts.GetResource().GetLabels()
	project, id := labels["project_id"], labels["subscription_id"]
	if project == "" || id == "" {
		return "", Point{}, false
	}
	var best Point
	found := false
	for _, p := range ts.GetPoints() {
		end := p.GetInterval().GetEndTime()
		if end == nil || !end.IsValid() {
			continue
		}
		var v int64
		switch x := p.GetValue().GetValue().(type) {
		case *monitoringpb.TypedValue_Int64Value:
			v = x.Int64Value
		case *monitoringpb.TypedValue_DoubleValue:
			if math.IsNaN(x.DoubleValue) || x.DoubleValue < 0 || x.DoubleValue > math.MaxInt64/2 {
				continue
			}
			v = int64(math.Ceil(x.DoubleValue))
		default:
			continue
		}
		if v < 0 {
			continue
		}
		at := end.AsTime()
		if !found || at.After(best.At) {
			best, found = Point{Messages: v, At: at}, true
		}
	}
	return "projects/" + project + "/subscriptions/" + id, best, found
}
