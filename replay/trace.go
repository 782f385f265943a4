package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Minutes is the length of a trace: one day.
const Minutes = 1440

// Org is one row of a trace: an org with one GPU workload of one replica,
// active in each minute its count was above zero.
type Org struct {
	ID     string
	Active [Minutes]bool
}

// Trace is a day of per-minute activity.
type Trace struct {
	Orgs []Org
}

// Read parses a trace in the Azure Functions 2019 public schema:
// HashFunction,HashOwner,HashApp, then 1440 per-minute counts whose
// headers are 1..1440 or 1_minute..1440_minute. Gzipped input is read as
// well. Every row is one org, named by its HashFunction.
func Read(r io.Reader) (*Trace, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("trace: gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("trace: header: %w", err)
	}
	if err := checkHeader(header); err != nil {
		return nil, err
	}
	header = slices.Clone(header) // the reader reuses its record
	t := &Trace{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		org := Org{ID: rec[0]}
		for i, v := range rec[3:] {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || n < 0 || n != float64(int64(n)) {
				return nil, fmt.Errorf("trace: line %d, column %d (%s): %q is not a count: expected a whole number of at least 0", line, i+4, header[i+3], v)
			}
			org.Active[i] = n > 0
		}
		t.Orgs = append(t.Orgs, org)
	}
	if len(t.Orgs) == 0 {
		return nil, errors.New("trace: no rows after the header: expected one org a row")
	}
	return t, nil
}

func checkHeader(h []string) error {
	want := []string{"HashFunction", "HashOwner", "HashApp"}
	if len(h) != len(want)+Minutes {
		return fmt.Errorf("trace: header has %d columns: expected %s and %d per-minute counts (%d in all), the Azure Functions 2019 schema",
			len(h), strings.Join(want, ","), Minutes, len(want)+Minutes)
	}
	for i, w := range want {
		if strings.TrimPrefix(h[i], "\ufeff") != w {
			return fmt.Errorf("trace: header column %d is %q: expected %q", i+1, h[i], w)
		}
	}
	for m := 1; m <= Minutes; m++ {
		got := h[len(want)+m-1]
		if got != strconv.Itoa(m) && got != strconv.Itoa(m)+"_minute" {
			return fmt.Errorf("trace: header column %d is %q: expected minute %d, as %q or %q", len(want)+m, got, m, strconv.Itoa(m), strconv.Itoa(m)+"_minute")
		}
	}
	return nil
}
