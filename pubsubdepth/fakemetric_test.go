package pubsubdepth

import (
	"context"
	"testing"

	"github.com/orgscaler/orgscaler/internal/monitoringtest"
)

func startMetricService(t *testing.T) (*monitoringtest.Server, *Monitoring) {
	t.Helper()
	ms := monitoringtest.Start(t)
	mon, err := NewMonitoring(context.Background(), MonitoringOptions{Endpoint: ms.Addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mon.Close() })
	return ms, mon
}
