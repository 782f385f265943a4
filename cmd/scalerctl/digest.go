package main

import (
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
			admin, ctx, cancel, err := c.admin(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := admin.Digest(ctx, &pb.DigestRequest{})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(c.out, resp)
			}
			_, err = fmt.Fprintf(c.out, "%s  %d orgs  (replica %s)\n", resp.GetDigest(), resp.GetOrgs(), resp.GetReplica())
			return err
		},
	}
}
