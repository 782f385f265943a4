package replication

import (
	"reflect"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/hlc"
)

// Changes cross the wire unchanged: activity, settings with their stamps,
// settings not in the change, and deletes.
func TestChangesRoundTrip(t *testing.T) {
	off, window := false, 2*time.Hour
	in := []activity.Change{
		{Org: "acme", Activity: time.Unix(1_700_000_000, 123).UTC()},
		{Org: "acme", ScaleToZero: &off, ScaleToZeroAt: hlc.Stamp(42)},
		{Org: "globex", IdleWindow: &window, IdleWindowAt: hlc.Stamp(43), Activity: time.Unix(1_700_000_001, 0).UTC()},
		{Org: "gone", Deleted: hlc.Stamp(44)},
	}
	out := fromProto(ToProto(in))
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
}
