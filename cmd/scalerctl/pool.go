package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orgscaler/orgscaler/internal/flagenv"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func (c *cli) poolCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Define GPU pools and see their shares",
		Long: `A GPU pool caps the GPUs its members (triggers with "pool: NAME") get
together, shares them fairly between orgs by their --pool-weight, and can
pace their wakes. docs/POOLS.md explains the model.`}
	cmd.AddCommand(c.poolSetCommand(), c.poolGetCommand(), c.poolListCommand(), c.poolDeleteCommand())
	return cmd
}

func (c *cli) poolSetCommand() *cobra.Command {
	var gpus int64
	var wakeRate string
	var stabilization time.Duration
	cmd := &cobra.Command{
		Use:   "set POOL [--gpus N] [--wake-rate N/DURATION|off] [--stabilization D]",
		Short: "Create a GPU pool or change its settings (on disk before it returns)",
		Long: `Create a GPU pool or change the settings given. --gpus is the GPUs the
pool's members share (required for a new pool; size it to the quota or
the autoscaler's limit for those GPUs). --wake-rate N/D lets at most N
members go from zero to active in any D; the others queue, those with
backlog first ("off" stops pacing). --stabilization is how long a share
waits, once its demand is lower, before it comes down (default 60s): a
member whose demand flaps moves the others at most once per period.`,
		Example: `  scalerctl pool set a100 --gpus 64
  scalerctl pool set a100 --wake-rate 2/30s
  scalerctl pool set a100 --gpus 48 --stabilization 2m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &pb.SetPoolRequest{Pool: args[0]}
			if cmd.Flags().Changed("gpus") {
				req.Gpus = proto.Int64(gpus)
			}
			if cmd.Flags().Changed("wake-rate") {
				n, per, err := parseWakeRate(wakeRate)
				if err != nil {
					return err
				}
				req.WakeCount = proto.Int32(n)
				if n > 0 {
					req.WakePer = durationpb.New(per)
				}
			}
			if cmd.Flags().Changed("stabilization") {
				req.Stabilization = durationpb.New(stabilization)
			}
			if req.Gpus == nil && req.WakeCount == nil && req.Stabilization == nil {
				return fmt.Errorf("nothing to change: give --gpus, --wake-rate or --stabilization")
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.Pool, error) {
				resp, err := api.admin.SetPool(ctx, req)
				return resp.GetPool(), err
			}, func(p *pb.Pool) error { return printPools(c, []*pb.Pool{p}) })
		},
	}
	cmd.Flags().Int64Var(&gpus, "gpus", 0, "the GPUs the pool's members share")
	cmd.Flags().StringVar(&wakeRate, "wake-rate", "", `at most N wakes per DURATION, such as 2/30s ("off": no pacing)`)
	cmd.Flags().DurationVar(&stabilization, "stabilization", 0, "how long a share waits before it comes down (a new pool: 60s)")
	flagenv.NoEnv(cmd.Flags(), "gpus", "wake-rate", "stabilization")
	return cmd
}

// parseWakeRate reads N/DURATION, or off (0).
func parseWakeRate(s string) (int32, time.Duration, error) {
	if s == "off" || s == "0" {
		return 0, 0, nil
	}
	n, d, ok := strings.Cut(s, "/")
	count, err := strconv.ParseInt(n, 10, 32)
	per, perr := time.ParseDuration(d)
	if !ok || err != nil || perr != nil || count < 0 {
		return 0, 0, fmt.Errorf("--wake-rate is %q: expected N/DURATION, such as 2/30s, or off", s)
	}
	return int32(count), per, nil
}

func (c *cli) poolGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get POOL",
		Short: "Show a pool: its members, their demand, weight and share, and its wake queue",
		Long: `Show a pool and, as of its last turn (each second), every member: its
ScaledObject and metric, org and weight, GPUs per replica, the replicas it
would get without the pool (DEMAND) and those it gets (SHARE), its
minReplicaCount, and its place in the wake queue.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.Pool, error) {
				resp, err := api.admin.GetPool(ctx, &pb.GetPoolRequest{Pool: args[0]})
				return resp.GetPool(), err
			}, func(p *pb.Pool) error {
				if err := printPools(c, []*pb.Pool{p}); err != nil {
					return err
				}
				return printMembers(c, p)
			})
		},
	}
}

func (c *cli) poolListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the GPU pools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ListPoolsResponse, error) {
				return api.admin.ListPools(ctx, &pb.ListPoolsRequest{})
			}, func(resp *pb.ListPoolsResponse) error { return printPools(c, resp.GetPools()) })
		},
	}
}

func (c *cli) poolDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete POOL",
		Short: "Delete a GPU pool",
		Long: `Delete a GPU pool. Triggers that still name it are refused with
FailedPrecondition (KEDA's fallback applies to them) until it is set
again: remove "pool" from their metadata first to run them uncapped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.DeletePoolResponse, error) {
				return api.admin.DeletePool(ctx, &pb.DeletePoolRequest{Pool: args[0]})
			}, func(resp *pb.DeletePoolResponse) error {
				_, err := fmt.Fprintf(c.out, "deleted pool %s\n", resp.GetPool().GetName())
				return err
			})
		},
	}
}

func printPools(c *cli, ps []*pb.Pool) error {
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tGPUS\tDEMANDED\tGRANTED\tQUEUED\tWAKE RATE\tSTABILIZATION\tUPDATED")
	for _, p := range ps {
		rate := "-"
		if p.GetWakeCount() > 0 {
			rate = fmt.Sprintf("%d/%s", p.GetWakeCount(), p.GetWakePer().AsDuration())
		}
		queued := strconv.Itoa(int(p.GetQueued()))
		if nw := p.GetNextWake(); nw != nil {
			queued += " (next wake in " + human(nw.AsTime().Sub(c.now())) + ")"
		}
		granted := strconv.FormatInt(p.GetGrantedGpus(), 10)
		if p.GetOvercommitted() {
			granted += " (minimums exceed the pool)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.GetName(), p.GetGpus(), p.GetDemandedGpus(), granted, queued,
			rate, p.GetStabilization().AsDuration(), ago(p.GetUpdated().AsTime(), c.now()))
	}
	return tw.Flush()
}

func printMembers(c *cli, p *pb.Pool) error {
	if len(p.GetMembers()) == 0 {
		_, err := fmt.Fprintln(c.out, "\nno members: no trigger names this pool yet")
		return err
	}
	fmt.Fprintln(c.out)
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCALEDOBJECT\tMETRIC\tORG\tWEIGHT\tGPUS/REPLICA\tDEMAND\tSHARE\tMIN\tQUEUE")
	for _, m := range p.GetMembers() {
		queue := "-"
		if m.GetQueuePosition() > 0 {
			queue = fmt.Sprintf("#%d of %d", m.GetQueuePosition(), p.GetQueued())
		}
		org := m.GetOrg()
		if org == "" {
			org = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", m.GetScaledObject(), m.GetMetricName(), org, m.GetWeight(),
			m.GetGpusPerReplica(), m.GetDemand(), m.GetShare(), m.GetMin(), queue)
	}
	return tw.Flush()
}
