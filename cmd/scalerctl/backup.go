package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protodelim"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// backupMagic begins a backup file's header line; the rest is a gzip
// stream of length-delimited SnapshotResponse chunks.
const backupMagic = "orgscaler-backup/1"

func (c *cli) backupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write every org's state, idle times, history, GPU pools and GPU-hours ledger to FILE",
		Long: `backup writes the scaler's whole state, as a replica hands it to a peer
that joins (orgs and tombstones, idle-time counts, activity history, GPU
pools' definitions, the GPU-hours ledger), to FILE: a header line naming the replica, its org count
and digest, then the chunks, gzipped. scalerctl restore applies it. Needs
an admin token. The state is read org by org while the scaler runs; an
org changed meanwhile is in the backup as it was or as it became, and the
ledger's hours of the last --flush-interval (not yet on disk) are not in
it.`,
		Example: "  scalerctl backup orgscaler-$(date +%F).backup",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, ctx, cancel, err := c.longAdmin(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			d, err := admin.Digest(ctx, &pb.DigestRequest{})
			if err != nil {
				return err
			}
			stream, err := admin.Snapshot(ctx, &pb.SnapshotRequest{Usage: true})
			if err != nil {
				return err
			}
			n, err := writeBackup(args[0], d, func() (*pb.SnapshotResponse, error) { return stream.Recv() })
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote %s: %d orgs of replica %s (digest %s), %d chunks\n", args[0], d.GetOrgs(), d.GetReplica(), d.GetDigest(), n)
			return nil
		},
	}
}

func (c *cli) restoreCommand() *cobra.Command {
	var merge bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Apply a backup to a scaler with an empty data dir",
		Long: `restore applies a backup written by scalerctl backup, as a replica applies
a peer's snapshot when it joins, then prints the scaler's digest beside the
backup's: equal when the scaler held nothing else. A scaler that holds orgs
is refused unless --merge (merged into live state, an old backup brings
back the orgs deleted since it was taken). In a cluster KEDA's polls create
orgs as soon as the scaler runs: start it with --unseen-orgs=dormant and
restore with --merge, so those orgs take the backup's state. In a fleet,
restore one replica; the others load its state when they start empty, or
by anti-entropy. Needs an admin token.`,
		Example: "  scalerctl restore orgscaler-2026-12-07.backup",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, ctx, cancel, err := c.longAdmin(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			stream, err := admin.Restore(ctx)
			if err != nil {
				return err
			}
			head, err := readBackup(args[0], func(chunk *pb.SnapshotResponse) error {
				return stream.Send(&pb.RestoreRequest{Chunk: chunk, Merge: merge})
			})
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				return err
			}
			d, err := admin.Digest(ctx, &pb.DigestRequest{})
			if err != nil {
				return err
			}
			same := "the same as the backup's"
			if d.GetDigest() != head["digest"] {
				same = "the backup's was " + head["digest"]
			}
			fmt.Fprintf(c.out, "restored %d items from %s (replica %s, taken %s): %d orgs, digest %s (%s)\n",
				resp.GetItems(), args[0], head["replica"], head["taken"], resp.GetOrgs(), d.GetDigest(), same)
			return nil
		},
	}
	cmd.Flags().BoolVar(&merge, "merge", false, "merge into a scaler that already holds orgs")
	return cmd
}

// longAdmin dials the admin API for calls that stream a whole state:
// --timeout per chunk would be guesswork, so they get an hour (^C ends
// them sooner).
func (c *cli) longAdmin(cmd *cobra.Command) (pb.AdminServiceClient, context.Context, context.CancelFunc, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Hour)
	return pb.NewAdminServiceClient(conn), ctx, cancel, nil
}

// writeBackup writes the header and every chunk next returns until
// io.EOF, through a temporary file renamed into place, and says how many
// chunks it wrote.
func writeBackup(file string, d *pb.DigestResponse, next func() (*pb.SnapshotResponse, error)) (int, error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	fmt.Fprintf(tmp, "%s replica=%s orgs=%d digest=%s taken=%s\n", backupMagic, d.GetReplica(), d.GetOrgs(), d.GetDigest(), time.Now().UTC().Format(time.RFC3339))
	zw := gzip.NewWriter(tmp)
	n := 0
	for {
		chunk, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("the scaler's snapshot stopped: %w", err)
		}
		if _, err := protodelim.MarshalTo(zw, chunk); err != nil {
			return n, err
		}
		n++
	}
	if err := zw.Close(); err != nil {
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), file)
}

// readBackup checks file's header, hands each chunk to send, and returns
// the header's fields.
func readBackup(file string, send func(*pb.SnapshotResponse) error) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	line, err := r.ReadString('\n')
	fields := strings.Fields(line)
	if err != nil || len(fields) == 0 || fields[0] != backupMagic {
		return nil, fmt.Errorf("%s is not a scalerctl backup: its first line should begin %q", file, backupMagic)
	}
	head := map[string]string{}
	for _, kv := range fields[1:] {
		k, v, _ := strings.Cut(kv, "=")
		head[k] = v
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return head, fmt.Errorf("%s: %w", file, err)
	}
	br := bufio.NewReader(zr)
	for i := 1; ; i++ {
		chunk := &pb.SnapshotResponse{}
		if err := protodelim.UnmarshalFrom(br, chunk); err != nil {
			if errors.Is(err, io.EOF) {
				return head, nil
			}
			return head, fmt.Errorf("%s: chunk %d: %w", file, i, err)
		}
		if err := send(chunk); err != nil {
			return head, err
		}
	}
}
