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

// Read parses a trace of the Azure Functions 2019 public data: either
// HashFunction,HashOwner,HashApp (as samples of it, such as vHive's, lay it
// out) or HashOwner,HashApp,HashFunction,Trigger (the published
// invocations_per_function files), then 1440 per-minute counts whose
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
	lead, fn, err := checkHeader(header)
	if err != nil {
		return nil, err
	}
	header = slices.Clone(header) // the reader reuses its record
	t := &Trace{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		org := Org{ID: rec[fn]}
		for i, v := range rec[lead:] {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || n < 0 || n != float64(int64(n)) {
				line, _ := cr.FieldPos(lead + i)
				return nil, fmt.Errorf("trace: line %d, column %d (%s): %q is not a count: expected a whole number of at least 0", line, lead+i+1, header[lead+i], v)
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

// layouts are the leading columns a trace may have, and which of them
// names the function.
var layouts = []struct {
	columns  []string
	function int
}{
	{[]string{"HashFunction", "HashOwner", "HashApp"}, 0},
	{[]string{"HashOwner", "HashApp", "HashFunction", "Trigger"}, 2},
}

// checkHeader returns how many leading columns h has and which names the
// function, or what is wrong with it.
func checkHeader(h []string) (lead, function int, err error) {
	if len(h) > 0 {
		h[0] = strings.TrimPrefix(h[0], "\ufeff")
	}
	var want []string
	for _, l := range layouts {
		want = append(want, strings.Join(l.columns, ","))
		if len(h) != len(l.columns)+Minutes || !slices.Equal(h[:len(l.columns)], l.columns) {
			continue
		}
		for m := 1; m <= Minutes; m++ {
			got := h[len(l.columns)+m-1]
			if got != strconv.Itoa(m) && got != strconv.Itoa(m)+"_minute" {
				return 0, 0, fmt.Errorf("trace: header column %d is %q: expected minute %d, as %q or %q", len(l.columns)+m, got, m, strconv.Itoa(m), strconv.Itoa(m)+"_minute")
			}
		}
		return len(l.columns), l.function, nil
	}
	first := strings.Join(h[:min(len(h), 4)], ",")
	return 0, 0, fmt.Errorf("trace: header has %d columns starting %q: expected %s or %s, then %d per-minute counts (the Azure Functions 2019 schema)",
		len(h), first, want[0], want[1], Minutes)
}
