package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/keepalive"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replay"
)

// defaultPolicies are the anchors a replay compares by default.
const defaultPolicies = "fixed:10m,fixed:1h,fixed:4h,fixed:1d,hybrid,learned,limit"

func (c *cli) replayCommand() *cobra.Command {
	var coldStart time.Duration
	var policies, plot, day string
	var fromScaler bool
	cmd := &cobra.Command{
		Use:   "replay TRACE.csv | --from-scaler [--day YYYY-MM-DD] [--cold-start 3m] [--policy P,...] [-o table|json] [--plot out.svg]",
		Short: "Replay a day of per-minute activity through keep-alive policies: cold starts against GPU-hours",
		Long: `replay runs a per-minute activity trace through the keep-alive policies the
scaler runs (the same code), and prints for each: cold activations as a
share of active minutes, the per-org cold share at the 75th percentile,
and the GPU-hours billed, against fixed:10m's.

The trace is the Azure Functions 2019 public data (gzipped or not):
HashFunction,HashOwner,HashApp or HashOwner,HashApp,HashFunction,Trigger,
then 1440 per-minute counts (headers 1..1440 or 1_minute..1440_minute). Every row is one org with one GPU workload of
one replica. The model is in docs/POLICY.md.

Policies: fixed:DURATION (the scaler's --idle-window: up for that long
after the last activity), hybrid (the histogram policy of "Serverless in
the Wild", USENIX ATC 2020), learned[:PRICE] (the scaler's own: per org,
the keep-alive and pre-warm of least expected cost, a cold start priced at
PRICE of GPU-time, 35m by default), and limit (knowing every arrival
ahead: the least any policy could bill with no cold start).

With a file it needs no scaler. With --from-scaler it replays the scaler's
own orgs instead: their activity by the minute over one UTC day (--day,
default yesterday; the scaler keeps a week), each org as one workload.`,
		Example: `  scalerctl replay ../shared/traces/azure-functions-2019-day1-half-a.csv --cold-start 3m
  scalerctl replay trace.csv --policy fixed:30m,hybrid -o json
  scalerctl replay --from-scaler --day 2026-12-01 --cold-start 2m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if coldStart < time.Minute || coldStart%time.Minute != 0 {
				return fmt.Errorf("--cold-start is %s: expected whole minutes, at least 1m (the trace is per minute)", coldStart)
			}
			ps, err := parsePolicies(policies)
			if err != nil {
				return err
			}
			var tr *replay.Trace
			switch {
			case fromScaler && len(args) == 1:
				return fmt.Errorf("give TRACE.csv or --from-scaler, not both")
			case fromScaler:
				tr, err = c.scalerTrace(cmd, day)
			case len(args) == 1:
				tr, err = readTrace(args[0])
			default:
				return fmt.Errorf("give a trace file, or --from-scaler to replay the scaler's own orgs")
			}
			if err != nil {
				return err
			}
			return c.printReplay(tr, int(coldStart/time.Minute), ps, plot)
		},
	}
	cmd.Flags().BoolVar(&fromScaler, "from-scaler", false, "replay the scaler's own orgs (its activity history, by the minute) instead of a file")
	cmd.Flags().StringVar(&day, "day", "", "with --from-scaler, the UTC day to replay, YYYY-MM-DD (default yesterday)")
	cmd.Flags().DurationVar(&coldStart, "cold-start", 3*time.Minute, "how long a workload takes from starting to serving (whole minutes)")
	cmd.Flags().StringVar(&policies, "policy", defaultPolicies, "policies to compare, comma-separated: fixed:DURATION, hybrid, learned[:PRICE], limit")
	cmd.Flags().StringVar(&plot, "plot", "", "also draw the policies as an SVG file: cold starts against GPU-hours, the learned prices joined into a frontier")
	return cmd
}

// parsePolicies reads --policy; nil stands for limit, which is no policy
// but a bound.
func parsePolicies(list string) ([]keepalive.Policy, error) {
	var out []keepalive.Policy
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name == "limit" {
			out = append(out, nil)
			continue
		}
		p, err := keepalive.Parse(name)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w (or limit)", err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--policy is %q: expected at least one policy, such as %s", list, defaultPolicies)
	}
	return out, nil
}

func (c *cli) printReplay(tr *replay.Trace, coldStart int, ps []keepalive.Policy, plot string) error {
	var results []replay.Result
	var base replay.Result // fixed:10m's, once
	tenMinutes := keepalive.Policy(keepalive.Fixed(10 * time.Minute))
	for _, p := range ps {
		var r replay.Result
		if p == nil {
			r = replay.Limit(tr, coldStart)
		} else {
			r = replay.Run(tr, p, coldStart)
		}
		results = append(results, r)
		if p == tenMinutes {
			base = r
		}
	}
	if base.Policy == "" {
		base = replay.Run(tr, tenMinutes, coldStart)
	}
	s := replay.Summarize(tr, coldStart, base, results)
	if plot != "" {
		f, err := os.Create(plot)
		if err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		if err := errors.Join(s.WriteSVG(f), f.Close()); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if c.output == "json" {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return s.WriteTable(c.out)
}

func readTrace(path string) (*replay.Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr, err := replay.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tr, nil
}

// scalerTrace is one UTC day of the scaler's own orgs, from its history.
func (c *cli) scalerTrace(cmd *cobra.Command, day string) (*replay.Trace, error) {
	req := &pb.HistoryRequest{}
	if day != "" {
		d, err := time.Parse(time.DateOnly, day)
		if err != nil {
			return nil, fmt.Errorf("--day is %q: expected a UTC day, YYYY-MM-DD", day)
		}
		req.Day = timestamppb.New(d)
	}
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(cmd)
	defer cancel()
	stream, err := pb.NewAdminServiceClient(conn).History(ctx, req)
	if err != nil {
		return nil, err
	}
	tr := &replay.Trace{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, d := range resp.GetDays() {
			o := replay.Org{ID: d.GetOrg()}
			var bits history.Bits
			if err := history.Decode(d.GetMinutes(), &bits); err != nil {
				return nil, fmt.Errorf("org %q: %w", d.GetOrg(), err)
			}
			for m := range replay.Minutes {
				o.Active[m] = bits.Has(m)
			}
			tr.Orgs = append(tr.Orgs, o)
		}
	}
	if len(tr.Orgs) == 0 {
		return nil, fmt.Errorf("the scaler holds no activity for that day (it keeps a week of history, from when it first ran this version)")
	}
	return tr, nil
}
