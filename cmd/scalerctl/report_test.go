package main

import (
	"maps"
	"strings"
	"testing"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// --gpu-hour-price takes one price for every type, or one per type with
// * for the rest; anything else is refused naming what is wrong.
func TestParsePrices(t *testing.T) {
	for in, want := range map[string]prices{
		"":                  nil,
		"0":                 nil,
		"2.50":              {"*": 2.5},
		"a100=3.67,l4=0.71": {"a100": 3.67, "l4": 0.71},
		"a100=3.67, *=1.20": {"a100": 3.67, "*": 1.2},
	} {
		got, err := parsePrices(in)
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for in, why := range map[string]string{"-1": "negative", "a100": "not TYPE=PRICE", "a100=x": "not a number", "l4=1,l4=2": "priced twice"} {
		if _, err := parsePrices(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v; want an error saying %q", in, err, why)
		}
	}
	w := &pb.WorkloadUsage{GpuType: "h100"}
	if _, ok := (prices{"a100": 1}).of(w); ok {
		t.Error("an h100 priced by a100's price")
	}
	if v, ok := (prices{"a100": 1, "*": 2}).of(w); !ok || v != 2 {
		t.Errorf("an h100 with *=2: %v %v", v, ok)
	}
}
