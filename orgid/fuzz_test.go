package orgid

import (
	"regexp"
	"strings"
	"testing"
)

var orgPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func FuzzValidOrg(f *testing.F) {
	for _, s := range []string{"acme", "", "a b", strings.Repeat("a", 128), strings.Repeat("a", 129), "acme:eu-1.x_y", "ü", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) != orgPattern.MatchString(s) {
			t.Fatalf("ValidOrg(%q) = %v, the rule says %v", s, Valid(s), !Valid(s))
		}
	})
}
