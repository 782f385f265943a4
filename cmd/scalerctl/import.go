package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/orgid"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/schedule"
)

// importChunk is how many rows one message of an import carries.
const importChunk = 5000

// The scaler's bounds, checked here first so that a file is refused
// before any of it is sent: its --max-clock-skew default, and its longest
// idle window (api.MaxIdleWindow).
const (
	importSkew    = 30 * time.Second
	maxIdleWindow = 366 * 24 * time.Hour
)

// importColumns are the columns (CSV) or keys (JSON lines) an import
// reads; org is required, the others may be empty or left out.
var importColumns = []string{"org", "last_activity_at", "scale_to_zero_allowed", "idle_window", "warm_schedule"}

func (c *cli) orgImportCommand() *cobra.Command {
	var dryRun bool
	var format string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Create or update orgs from an org table export (CSV or JSON lines)",
		Long: `Create or update orgs from an export of the org table a cutover replaces
(docs/MIGRATING.md): CSV with a header, or JSON lines, with the columns

  org                    required: the org id
  last_activity_at       RFC 3339 (2026-11-30T17:04:05Z); empty: none known
  scale_to_zero_allowed  true or false; empty: as it is (a new org: true)
  idle_window            a duration (2h, 90m); 0 or empty: the scaler's default
  warm_schedule          DAYS HH:MM-HH:MM ZONE[; ...]; empty: as it is

Unknown columns are refused, naming them. The whole file is checked before
anything is sent: a bad row is named by its line and field, and nothing is
imported. Last activity merges by max (an import never moves an org's
activity back), settings are written as any admin change, and an org whose
last activity is older than its window (or that has none) arrives dormant,
so KEDA's first poll of its triggers finds it at zero. Importing the same
file again changes nothing, unless a setting was changed since: the file's
is written again. Needs an admin token.`,
		Example: `  scalerctl org import orgs.csv --dry-run   # what would change
  scalerctl org import orgs.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, err := readImport(args[0], format)
			if err != nil {
				return err
			}
			return c.importRows(cmd, rows, dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would change, and change nothing")
	cmd.Flags().StringVar(&format, "format", "", "csv or jsonl (default: from the file's extension, else its first byte)")
	return cmd
}

// importRows sends rows in chunks, each within --timeout, and prints what
// the scaler did.
func (c *cli) importRows(cmd *cobra.Command, rows []*pb.ImportedOrg, dryRun bool) error {
	conn, err := c.dial()
	if err != nil {
		return err
	}
	chunks := (len(rows) + importChunk - 1) / importChunk
	ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout*time.Duration(chunks+1))
	defer cancel()
	stream, err := pb.NewAdminServiceClient(conn).ImportOrgs(ctx)
	if err != nil {
		return err
	}
	for len(rows) > 0 {
		n := min(len(rows), importChunk)
		if err := stream.Send(&pb.ImportOrgsRequest{Orgs: rows[:n], DryRun: dryRun}); err != nil {
			break // the scaler ended the call: CloseAndRecv says why
		}
		rows = rows[n:]
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.out, resp)
	}
	verb := "imported"
	if resp.GetDryRun() {
		verb = "dry run, nothing changed; would import"
	}
	fmt.Fprintf(c.out, "%s %d rows: %d created, %d updated, %d unchanged; %d dormant after\n",
		verb, resp.GetRows(), resp.GetCreated(), resp.GetUpdated(), resp.GetUnchanged(), resp.GetDormant())
	for _, l := range resp.GetChanges() {
		fmt.Fprintln(c.out, "  "+l)
	}
	if n := resp.GetChangesLeftOut(); n > 0 {
		fmt.Fprintf(c.out, "  … and %d more\n", n)
	}
	return nil
}

// readImport reads and checks every row of file, naming the first bad one
// by its line and field.
func readImport(file, format string) ([]*pb.ImportedOrg, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if format == "" {
		format = importFormat(file, b)
	}
	var rows []*pb.ImportedOrg
	switch format {
	case "csv":
		rows, err = readCSV(b)
	case "jsonl":
		rows, err = readJSONLines(b)
	default:
		return nil, fmt.Errorf("--format is %q: expected csv or jsonl", format)
	}
	if err != nil {
		return nil, fmt.Errorf("%s:%w", file, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no rows to import", file)
	}
	// Each org once: two rows of one org would be written at one stamp,
	// and which one wins would not be the file's order.
	seen := make(map[string]int64, len(rows))
	for _, r := range rows {
		if at, dup := seen[r.GetOrg()]; dup {
			return nil, fmt.Errorf("%s:%d: org %q is on line %d already: expected each org once", file, r.GetLine(), r.GetOrg(), at)
		}
		seen[r.GetOrg()] = r.GetLine()
	}
	return rows, nil
}

func importFormat(file string, b []byte) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".csv":
		return "csv"
	case ".jsonl", ".ndjson", ".json":
		return "jsonl"
	}
	if t := bytes.TrimLeft(b, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '{' {
		return "jsonl"
	}
	return "csv"
}

// lineError is a bad row: "LINE: FIELD ..." after the file's name.
func lineError(line int, field, format string, args ...any) error {
	return fmt.Errorf("%d: %s "+format, append([]any{line, field}, args...)...)
}

func readCSV(b []byte) ([]*pb.ImportedOrg, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("1: the header: %w", err)
	}
	cols := slices.Clone(header)
	for i, h := range cols {
		cols[i] = strings.TrimSpace(h)
		if !slices.Contains(importColumns, cols[i]) {
			return nil, fmt.Errorf("1: unknown column %q: expected %s", cols[i], strings.Join(importColumns, ", "))
		}
	}
	if !slices.Contains(cols, "org") {
		return nil, fmt.Errorf("1: no org column: the header must name it (columns: %s)", strings.Join(importColumns, ", "))
	}
	var rows []*pb.ImportedOrg
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		line, _ := r.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", line, err)
		}
		fields := map[string]string{}
		for i, v := range rec {
			fields[cols[i]] = strings.TrimSpace(v)
		}
		row, err := importRow(line, fields)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
}

func readJSONLines(b []byte) ([]*pb.ImportedOrg, error) {
	var rows []*pb.ImportedOrg
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; s.Scan(); line++ {
		text := bytes.TrimSpace(s.Bytes())
		if len(text) == 0 {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(text, &obj); err != nil {
			return nil, fmt.Errorf("%d: %w", line, err)
		}
		fields := map[string]string{}
		for k, v := range obj {
			if !slices.Contains(importColumns, k) {
				return nil, fmt.Errorf("%d: unknown key %q: expected %s", line, k, strings.Join(importColumns, ", "))
			}
			switch v := v.(type) {
			case nil:
			case string:
				fields[k] = v
			case bool:
				fields[k] = strconv.FormatBool(v)
			default:
				return nil, lineError(line, k, "is %v: expected a string%s", v, map[bool]string{true: " or a boolean"}[k == "scale_to_zero_allowed"])
			}
		}
		row, err := importRow(line, fields)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, s.Err()
}

// importRow checks one row's fields as the scaler will.
func importRow(line int, f map[string]string) (*pb.ImportedOrg, error) {
	row := &pb.ImportedOrg{Line: int64(line), Org: f["org"]}
	if !orgid.Valid(row.Org) {
		return nil, lineError(line, "org", "is %q: expected %s", row.Org, orgid.Expected)
	}
	if v := f["last_activity_at"]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, lineError(line, "last_activity_at", "is %q: expected an RFC 3339 instant such as 2026-11-30T17:04:05Z", v)
		}
		if t.After(time.Now().Add(importSkew)) {
			return nil, lineError(line, "last_activity_at", "is %q, in the future: expected an instant in the past", v)
		}
		row.LastActivityAt = timestamppb.New(t)
	}
	if v := f["scale_to_zero_allowed"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, lineError(line, "scale_to_zero_allowed", "is %q: expected true or false", v)
		}
		row.ScaleToZeroAllowed = &b
	}
	if v := f["idle_window"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d > 0 && d < time.Second) || d > maxIdleWindow {
			return nil, lineError(line, "idle_window", "is %q: expected a duration from 1s to 366 days, such as 2h or 90m, or 0 for the scaler's default", v)
		}
		row.IdleWindow = durationpb.New(d)
	}
	if v, ok := f["warm_schedule"]; ok && v != "" {
		if _, err := schedule.Parse(v); err != nil {
			return nil, lineError(line, "warm_schedule", "is %q: %v", v, err)
		}
		row.WarmSchedule = &v
	}
	return row, nil
}
