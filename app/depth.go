package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/pubsubdepth"
)

// depth is the backlog side of the daemon: a source, a subscription
// checker and the tracker that keeps both in memory.
type depth struct {
	tracker  *pubsubdepth.Tracker
	embedded *pubsubdepth.Embedded // set with --pubsub=embedded
	closers  []func() error
	log      *slog.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func newDepth(o Options, reg prometheus.Registerer) (*depth, error) {
	d := &depth{log: o.Logger.With("component", "app")}
	var source pubsubdepth.Source
	var checker *pubsubdepth.PubSubChecker
	switch o.PubSub {
	case PubSubNone:
		return nil, nil
	case PubSubEmbedded:
		emb, err := pubsubdepth.StartEmbedded(o.PubSubListen, o.Now)
		if err != nil {
			return nil, err
		}
		d.embedded, source = emb, emb
		checker = pubsubdepth.NewPubSubChecker(option.WithEndpoint(emb.Addr()), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		d.closers = append(d.closers, checker.Close, emb.Close)
		d.log.Info("embedded Pub/Sub serving: point publishers and workers at it with PUBSUB_EMULATOR_HOST",
			"PUBSUB_EMULATOR_HOST", emb.Addr())
	case PubSubMonitoring:
		mon, err := pubsubdepth.NewMonitoring(context.Background(), pubsubdepth.MonitoringOptions{
			Project: o.GCPProject, Endpoint: o.MonitoringEndpoint, Insecure: o.MonitoringInsecure,
			Lookback: o.DepthEmptyAfter, Now: o.Now,
		})
		if err != nil {
			return nil, err
		}
		source = mon
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "orgscaler_monitoring_calls_total", Help: "Cloud Monitoring ListTimeSeries calls (pages included).",
		}, func() float64 { return float64(mon.Calls()) }))
		checker = pubsubdepth.NewPubSubChecker() // Application Default Credentials, or PUBSUB_EMULATOR_HOST
		d.closers = append(d.closers, checker.Close, mon.Close)
	default:
		return nil, fmt.Errorf("pubsub is %q: expected %s, %s or %s", o.PubSub, PubSubNone, PubSubEmbedded, PubSubMonitoring)
	}
	d.tracker = pubsubdepth.NewTracker(pubsubdepth.TrackerOptions{
		Source: source, Checker: checker, Refresh: o.DepthRefresh, MaxAge: o.DepthMaxAge, EmptyAfter: o.DepthEmptyAfter,
		MaxSubscriptions: o.MaxSubscriptions, Now: o.Now, Logger: o.Logger,
	})
	reg.MustRegister(d.tracker.Collector())
	return d, nil
}

func (d *depth) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Go(func() { d.tracker.Run(ctx) })
}

func (d *depth) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	for _, c := range d.closers {
		if err := c(); err != nil {
			d.log.Warn("closing the backlog source", "err", err)
		}
	}
}
