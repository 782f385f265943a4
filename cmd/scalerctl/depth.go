package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func (c *cli) hintCommand() *cobra.Command {
	var org string
	return withOrgFlag(&cobra.Command{
		Use:   "hint SUBSCRIPTION MESSAGES [--org ORG]",
		Short: "Say that MESSAGES were just enqueued on SUBSCRIPTION (wakes its workers at once)",
		Long: `Say that work was just enqueued on a subscription: its workloads turn active
at once, and the hinted messages count as backlog until the backlog source
shows data observed after the hint. With --org, the hint is also that org's
activity.`,
		Example: "  scalerctl hint projects/my-project/subscriptions/transcribe-jobs 3 --org acme",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("MESSAGES is %q: expected a whole number >= 0", args[1])
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.HintResponse, error) {
				return api.activity.Hint(ctx, &pb.HintRequest{Subscription: args[0], Org: org, Messages: n})
			}, func(resp *pb.HintResponse) error { return printBacklogs(c, []*pb.Backlog{resp.GetBacklog()}) })
		},
	}, &org)
}

func withOrgFlag(cmd *cobra.Command, org *string) *cobra.Command {
	cmd.Flags().StringVar(org, "org", "", "the org that enqueued the work (also counts as its activity)")
	return cmd
}

func (c *cli) depthCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "depth",
		Short: "List the subscriptions the scaler tracks, with their backlog",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ListBacklogsResponse, error) {
				return api.admin.ListBacklogs(ctx, &pb.ListBacklogsRequest{})
			}, func(resp *pb.ListBacklogsResponse) error { return printBacklogs(c, resp.GetBacklogs()) })
		},
	}
}

func printBacklogs(c *cli, bs []*pb.Backlog) error {
	now := c.now()
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIPTION\tBACKLOG\tLAST POINT\tHINT\tEXISTS\tWHY")
	for _, b := range bs {
		backlog := "unknown"
		if b.GetKnown() {
			backlog = strconv.FormatInt(b.GetMessages(), 10)
		}
		point := "none"
		if b.GetObservedAt() != nil {
			point = fmt.Sprintf("%d, %s ago", b.GetObservedMessages(), human(now.Sub(b.GetObservedAt().AsTime())))
		}
		hint := "-"
		if b.GetHintMessages() > 0 {
			hint = fmt.Sprintf("+%d, %s ago", b.GetHintMessages(), human(now.Sub(b.GetHintAt().AsTime())))
		}
		why := b.GetReason()
		if b.GetError() != "" {
			why += " (last fetch: " + b.GetError() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.GetSubscription(), backlog, point, hint, b.GetExistence(), why)
	}
	return tw.Flush()
}
