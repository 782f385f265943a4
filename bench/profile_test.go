package bench

import (
	"context"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/app"
)

// BenchmarkProfileIsActive is IsActive alone, closed loop, for profiling:
// go test -run=^$ -bench=ProfileIsActive -benchtime=1x -cpuprofile cpu.out ./bench
func BenchmarkProfileIsActive(b *testing.B) {
	ours := clients(b, startOurs(b, app.Options{}).Addr(), 4)
	isActive, _ := ours.calls()
	for range b.N {
		qps, _ := closedLoop(b, 64, size(5*time.Second, 100*time.Millisecond), isActive)
		b.ReportMetric(qps, "qps")
	}
	_ = context.Background
}
