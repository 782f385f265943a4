package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orgscaler/orgscaler/internal/flagenv"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func (c *cli) orgCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "org", Short: "Read and change orgs"}
	cmd.AddCommand(c.orgGetCommand(), c.orgListCommand(), c.orgSetCommand(), c.orgDeleteCommand(), c.orgImportCommand())
	return cmd
}

func (c *cli) orgGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ORG",
		Short: "Show one org",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.Org, error) {
				resp, err := api.admin.GetOrg(ctx, &pb.GetOrgRequest{Org: args[0]})
				return resp.GetOrg(), err
			}, c.printOrg)
		},
	}
}

func (c *cli) orgListCommand() *cobra.Command {
	var dormant, active bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--dormant|--active]",
		Short: "List orgs in id order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &pb.ListOrgsRequest{}
			switch {
			case dormant && active:
				return fmt.Errorf("--dormant and --active exclude each other")
			case dormant:
				req.Filter = pb.ListOrgsRequest_FILTER_DORMANT
			case active:
				req.Filter = pb.ListOrgsRequest_FILTER_ACTIVE
			}
			if limit < 0 {
				return fmt.Errorf("--limit is %d: expected 0 (no limit) or more", limit)
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ListOrgsResponse, error) {
				out := &pb.ListOrgsResponse{}
				for {
					req.PageSize = 1000
					if limit > 0 && limit-len(out.Orgs) < 1000 {
						req.PageSize = int32(limit - len(out.Orgs))
					}
					resp, err := api.admin.ListOrgs(ctx, req)
					if err != nil {
						return nil, err
					}
					out.Orgs = append(out.Orgs, resp.GetOrgs()...)
					req.PageToken = resp.GetNextPageToken()
					if req.PageToken == "" || (limit > 0 && len(out.Orgs) >= limit) {
						return out, nil
					}
				}
			}, func(resp *pb.ListOrgsResponse) error { return printOrgs(c.out, resp.GetOrgs(), c.now()) })
		},
	}
	cmd.Flags().BoolVar(&dormant, "dormant", false, "only dormant orgs")
	cmd.Flags().BoolVar(&active, "active", false, "only active orgs")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many orgs (0: all)")
	return cmd
}

func (c *cli) orgSetCommand() *cobra.Command {
	var scaleToZero bool
	var window time.Duration
	var windows []string
	var weight int64
	cmd := &cobra.Command{
		Use:   "set ORG [--scale-to-zero=true|false] [--idle-window D] [--warm-schedule WINDOW]... [--pool-weight W]",
		Short: "Change an org's settings (on disk before it returns)",
		Long: `Change an org's settings. --scale-to-zero=false keeps the org's workloads
running for good (an important org); --idle-window sets how long after its
last activity the org goes dormant (0 returns to the scaler's default);
--warm-schedule keeps the org warm inside weekly windows whatever its
activity, and wakes it at each window's start: DAYS HH:MM-HH:MM ZONE, with
DAYS as Mon..Sun, ranges and commas, or daily, and ZONE an IANA zone (local
hours hold across daylight-saving changes; a window whose end is before
its start runs past midnight). Give the flag once per window, or separate
windows with ";"; --warm-schedule "" clears the schedule. --pool-weight is
the org's weight in every GPU pool its workloads join: where orgs all want
more than the pool holds, an org of weight 2 gets twice the GPUs of one of
weight 1 (1 to 1000; 1 is the default).`,
		Example: `  scalerctl org set acme --scale-to-zero=false
  scalerctl org set acme --idle-window 2h
  scalerctl org set acme --warm-schedule "Mon-Fri 08:45-18:00 America/New_York"
  scalerctl org set acme --warm-schedule "Mon-Fri 09:00-17:00 Europe/Paris" --warm-schedule "Sat 10:00-12:00 Europe/Paris"
  scalerctl org set acme --warm-schedule ""
  scalerctl org set acme --pool-weight 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &pb.UpdateOrgRequest{Org: args[0]}
			if cmd.Flags().Changed("scale-to-zero") {
				req.ScaleToZeroAllowed = proto.Bool(scaleToZero)
			}
			if cmd.Flags().Changed("idle-window") {
				req.IdleWindow = durationpb.New(window)
			}
			if cmd.Flags().Changed("warm-schedule") {
				req.WarmSchedule = proto.String(strings.Join(windows, "; "))
				if strings.TrimSpace(strings.ReplaceAll(req.GetWarmSchedule(), ";", "")) == "" {
					req.WarmSchedule = proto.String("")
				}
			}
			if cmd.Flags().Changed("pool-weight") {
				req.PoolWeight = proto.Int64(weight)
			}
			if req.ScaleToZeroAllowed == nil && req.IdleWindow == nil && req.WarmSchedule == nil && req.PoolWeight == nil {
				return fmt.Errorf("nothing to change: give --scale-to-zero, --idle-window, --warm-schedule or --pool-weight")
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.Org, error) {
				resp, err := api.admin.UpdateOrg(ctx, req)
				return resp.GetOrg(), err
			}, c.printOrg)
		},
	}
	cmd.Flags().BoolVar(&scaleToZero, "scale-to-zero", true, "whether the org may go dormant and scale to zero")
	cmd.Flags().DurationVar(&window, "idle-window", 0, "the org's idle window, such as 2h (0: the scaler's default)")
	cmd.Flags().StringArrayVar(&windows, "warm-schedule", nil, `a window the org is warm in, such as "Mon-Fri 08:45-18:00 America/New_York" (repeat for several; "" clears)`)
	// Each of these given is a change asked for: never from the environment.
	cmd.Flags().Int64Var(&weight, "pool-weight", 1, "the org's weight in GPU pools, 1 to 1000")
	flagenv.NoEnv(cmd.Flags(), "scale-to-zero", "idle-window", "warm-schedule", "pool-weight")
	return cmd
}

func (c *cli) orgDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ORG",
		Short: "Remove an org from the scaler's memory and disk",
		Long: `Remove an org from the scaler's memory and disk (gone from both before it
returns). Its GPU-hours figures stay in the report. A trigger that still
names the org recreates it as new, active from that moment: delete the
org's ScaledObjects first if it is gone for good.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.DeleteOrgResponse, error) {
				return api.admin.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: args[0]})
			}, func(resp *pb.DeleteOrgResponse) error {
				fmt.Fprintf(c.out, "deleted %s\n", resp.GetOrg().GetId())
				if n := resp.GetOpenStreams(); n > 0 {
					fmt.Fprintf(c.out, "%d open KEDA stream(s) still name it: it is back as a new, active org\n", n)
				}
				return nil
			})
		},
	}
}

// printOrg prints one org as a table of one.
func (c *cli) printOrg(o *pb.Org) error { return printOrgs(c.out, []*pb.Org{o}, c.now()) }

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func printOrgs(w io.Writer, orgs []*pb.Org, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tSTATE\tLAST ACTIVITY\tDORMANT\tSCALE TO ZERO\tIDLE WINDOW\tPOOL WEIGHT\tWARM SCHEDULE")
	for _, o := range orgs {
		window := human(o.GetIdleWindow().AsDuration())
		if !o.GetIdleWindowOverridden() {
			window += " (default)"
		}
		s2z := "allowed"
		if !o.GetScaleToZeroAllowed() {
			s2z = "off"
		}
		sched := o.GetWarmSchedule()
		if sched == "" {
			sched = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", o.GetId(), stateText(o), ago(o.GetLastActivity().AsTime(), now),
			dormantText(o, now), s2z, window, max(o.GetPoolWeight(), 1), sched)
	}
	return tw.Flush()
}

func stateText(o *pb.Org) string {
	if o.GetState() == pb.Org_STATE_DORMANT {
		return "dormant"
	}
	return "active"
}

func dormantText(o *pb.Org, now time.Time) string {
	switch {
	case o.GetDormantSince() != nil:
		return "since " + ago(o.GetDormantSince().AsTime(), now)
	case o.GetDormantAt() != nil:
		return "in " + human(o.GetDormantAt().AsTime().Sub(now))
	case o.GetScaleToZeroAllowed():
		return "never (its warm schedule covers every day)"
	default:
		return "never (scale to zero off)"
	}
}

func ago(t, now time.Time) string {
	return fmt.Sprintf("%s ago (%s)", human(now.Sub(t)), t.UTC().Format(time.RFC3339))
}

// human prints a duration the way people read it: 3d4h, 4h12m, 12m5s, 5s.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Second)
	days, h, m, s := d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%ds", m, s)
	default:
		return fmt.Sprintf("%ds", s)
	}
}
