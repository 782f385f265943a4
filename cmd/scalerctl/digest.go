package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func (c *cli) digestCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "digest",
		Short: "A hash of every org's state: equal on replicas that agree",
		Long: `Print a hash of every org's state (id, last activity, settings) with the
number of orgs and the replica that answered. Replicas that agree print the
same digest; ask each one with --addr to compare them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(c, cmd, func(ctx context.Context, api api) (*pb.DigestResponse, error) {
				return api.admin.Digest(ctx, &pb.DigestRequest{})
			}, func(resp *pb.DigestResponse) error {
				_, err := fmt.Fprintf(c.out, "%s  %d orgs  (replica %s)\n", resp.GetDigest(), resp.GetOrgs(), resp.GetReplica())
				return err
			})
		},
	}
}
