package main

import (
	"fmt"
	"strings"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

// parseMeta reads "k=v,k=v" trigger metadata.
func parseMeta(s string) (map[string]string, error) {
	md := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta: %q is not KEY=VALUE", kv)
		}
		md[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(md) == 0 {
		return nil, fmt.Errorf("--meta is empty: give the trigger's metadata, such as workload=pynode,org=acme")
	}
	return md, nil
}

func (c *cli) askCommand() *cobra.Command {
	var kedaAddr, meta string
	cmd := &cobra.Command{
		Use:   "ask --meta KEY=VALUE,...",
		Short: "Ask the KEDA port what KEDA is told for a trigger: active, and the replica count",
		Long: `Ask the scaler's KEDA port exactly what KEDA asks on each poll (GetMetricSpec,
GetMetrics, IsActive), with KEDA's own client, for a trigger's metadata.`,
		Example: `  scalerctl ask --meta workload=pynode,org=acme
  scalerctl ask --meta workload=worker,subscription=projects/demo-project/subscriptions/transcribe,messagesPerReplica=5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			md, err := parseMeta(meta)
			if err != nil {
				return err
			}
			opts, err := c.dialOptions(false)
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient(kedaAddr, opts...)
			if err != nil {
				return fmt.Errorf("--keda-addr %q: %w", kedaAddr, err)
			}
			defer conn.Close()
			client := kedapb.NewExternalScalerClient(conn)
			ctx, cancel := c.ctx(cmd)
			defer cancel()
			// No ScaledObject name: the scaler then records no Event and no
			// usage for this question.
			ref := &kedapb.ScaledObjectRef{ScalerMetadata: md}
			spec, err := client.GetMetricSpec(ctx, ref)
			if err != nil {
				return err
			}
			name := spec.GetMetricSpecs()[0].GetMetricName()
			metrics, err := client.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: name})
			if err != nil {
				return err
			}
			active, err := client.IsActive(ctx, ref)
			if err != nil {
				return err
			}
			if c.output == "json" {
				b, err := protojson.Marshal(metrics)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, `{"active":%t,"metrics":%s}`+"\n", active.GetResult(), b)
				return nil
			}
			fmt.Fprintf(c.out, "active: %t\nreplicas: %v\nmetric: %s\n", active.GetResult(),
				metrics.GetMetricValues()[0].GetMetricValueFloat(), name)
			return nil
		},
	}
	cmd.Flags().StringVar(&kedaAddr, "keda-addr", "127.0.0.1:9090", "HOST:PORT of the scaler's KEDA port (its --listen)")
	cmd.Flags().StringVar(&meta, "meta", "", "the trigger's metadata, KEY=VALUE pairs separated by commas")
	return cmd
}
