package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func (c *cli) explainCommand() *cobra.Command {
	var meta string
	cmd := &cobra.Command{
		Use:   "explain [NAMESPACE/SCALEDOBJECT | --meta KEY=VALUE,...]",
		Short: "Why a workload is active or not right now: every input, the rule, and when it changes",
		Long: `Explain evaluates a trigger with the same decision KEDA's answers come from,
and prints every input: the org's state, last activity and window (and where
the window comes from), the scale-to-zero flag, the backlog and its age, any
hint, the rule that decided, the replicas asked for, and the instant the
answer changes next if nothing happens. Name a ScaledObject KEDA has asked
about, or give a trigger's metadata.`,
		Example: `  scalerctl explain ml/pynode-acme
  scalerctl explain --meta workload=model,org=acme,warmFor=1h`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &pb.ExplainRequest{}
			switch {
			case len(args) == 1 && meta != "":
				return fmt.Errorf("give NAMESPACE/SCALEDOBJECT or --meta, not both")
			case len(args) == 1:
				req.ScaledObject = args[0]
			case meta != "":
				md, err := parseMeta(meta)
				if err != nil {
					return err
				}
				req.Metadata = md
			default:
				return fmt.Errorf("give NAMESPACE/SCALEDOBJECT, or the trigger's metadata with --meta KEY=VALUE")
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ExplainResponse, error) {
				return api.admin.Explain(ctx, req)
			}, func(resp *pb.ExplainResponse) error { return printExplanation(c, resp) })
		},
	}
	cmd.Flags().StringVar(&meta, "meta", "", "the trigger's metadata, KEY=VALUE pairs separated by commas")
	return cmd
}

func printExplanation(c *cli, e *pb.ExplainResponse) error {
	now := c.now()
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("workload", "%s (metric %s)", e.GetWorkload(), e.GetMetricName())
	state := "inactive"
	if e.GetActive() {
		state = "active"
	}
	plural := "s"
	if e.GetReplicas() == 1 {
		plural = ""
	}
	row("answer", "%s, %d replica%s", state, e.GetReplicas(), plural)
	if e.GetError() != "" {
		row("KEDA gets", "an error instead of the metric: %s", e.GetError())
	}
	row("rule", "%s: %s", e.GetRule(), e.GetReason())
	if o := e.GetOrg(); o != nil {
		s2z := "allowed"
		if !o.GetScaleToZeroAllowed() {
			s2z = "off (never scales to zero)"
		}
		row("org", "%s: %s, last activity %s, scale to zero %s", o.GetId(), stateText(o), ago(o.GetLastActivity().AsTime(), now), s2z)
		if k := e.GetKeepAlive(); k != nil {
			printPlan(row, k, now)
		} else {
			source := map[string]string{"warmFor": "the trigger's warmFor", "org": "the org's own window", "default": "the scaler's --idle-window"}[e.GetWindowSource()]
			row("window", "%s (%s)", human(e.GetWindow().AsDuration()), source)
		}
	}
	if b := e.GetBacklog(); b != nil {
		backlog := "unknown"
		if b.GetKnown() {
			backlog = fmt.Sprintf("%d messages", b.GetMessages())
		}
		point := "no point yet"
		if b.GetObservedAt() != nil {
			point = fmt.Sprintf("point of %d observed %s ago", b.GetObservedMessages(), human(now.Sub(b.GetObservedAt().AsTime())))
		}
		if b.GetHintMessages() > 0 {
			point += fmt.Sprintf(", +%d hinted %s ago", b.GetHintMessages(), human(now.Sub(b.GetHintAt().AsTime())))
		}
		row("backlog", "%s of %s (%s; %s)", backlog, b.GetSubscription(), point, b.GetReason())
	}
	if p := e.GetPool(); p != "" {
		m := e.GetPoolMember()
		switch {
		case m == nil:
			row("pool", "%s: not seated yet (it is at the pool's next turn)", p)
		case m.GetQueuePosition() > 0:
			row("pool", "%s: queued, #%d of %d; wants %d replica(s) of %d GPU(s), org weight %d", p, m.GetQueuePosition(), e.GetPoolQueued(),
				m.GetDemand(), m.GetGpusPerReplica(), m.GetWeight())
		default:
			row("pool", "%s: share %d of the %d replica(s) it wants, %d GPU(s) each, org weight %d, minReplicaCount %d", p, m.GetShare(),
				m.GetDemand(), m.GetGpusPerReplica(), m.GetWeight(), m.GetMin())
		}
	}
	for _, k := range e.GetKnativeServices() {
		patched := "not patched by this replica"
		if k.GetPatchedAt() != nil {
			patched = "patched " + ago(k.GetPatchedAt().AsTime(), now)
		}
		minScale := k.GetMinScale()
		if minScale == "" {
			minScale = "unset"
		}
		row("knative", "%s/%s: revision %s min-scale %s (%s)", k.GetNamespace(), k.GetName(), k.GetRevision(), minScale, patched)
	}
	if nc := e.GetNextChange(); nc != nil {
		row("next change", "in %s (%s) if nothing happens", human(nc.AsTime().Sub(now)), nc.AsTime().UTC().Format("2006-01-02T15:04:05Z"))
	} else {
		row("next change", "only new activity, a hint or the backlog can change it")
	}
	return tw.Flush()
}

// printPlan shows a keep-alive plan: what it keeps, when it pre-warms next
// and why.
func printPlan(row func(k, format string, a ...any), k *pb.KeepAlivePlan, now time.Time) {
	row("keep-alive", "%s, cold start %s, minWarm %s, from %d idle times of the org's and %d of the fleet's",
		k.GetPolicy(), human(k.GetColdStart().AsDuration()), human(k.GetMinWarm().AsDuration()), k.GetIdleTimes(), k.GetFleetIdleTimes())
	plan := fmt.Sprintf("up %s after each activity", human(k.GetKeepFor().AsDuration()))
	if k.GetPrewarmFrom() != nil {
		plan += fmt.Sprintf(", then again from %s to %s after it", human(k.GetPrewarmFrom().AsDuration()), human(k.GetPrewarmUntil().AsDuration()))
	}
	row("plan", "%s: %s", plan, k.GetWhy())
	if np := k.GetNextPrewarm(); np != nil {
		row("next pre-warm", "in %s (%s)", human(np.AsTime().Sub(now)), np.AsTime().UTC().Format("2006-01-02T15:04:05Z"))
	} else {
		row("next pre-warm", "none ahead: only new activity brings it up")
	}
}
