package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// TestMain doubles as the flood process: with BENCH_FLOOD_ADDR set, the
// test binary floods that API at BENCH_FLOOD_RATE events a second until
// it is signalled, then prints how many events it sent. Producers are
// other processes, so the flood is too: it does not share the scaler's Go
// scheduler and garbage collector.
func TestMain(m *testing.M) {
	addr := os.Getenv("BENCH_FLOOD_ADDR")
	if addr == "" {
		os.Exit(m.Run())
	}
	rate, err := strconv.Atoi(os.Getenv("BENCH_FLOOD_RATE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "BENCH_FLOOD_RATE:", err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	api := pb.NewActivityServiceClient(conn)
	var events atomic.Int64
	done := make(chan struct{}, 4)
	for g := range 4 {
		go func() { flood(ctx, api, g, rate/4, &events); done <- struct{}{} }()
	}
	for range 4 {
		<-done
	}
	fmt.Println(events.Load())
	os.Exit(0)
}
