package feed

import "testing"

func TestOrgOf(t *testing.T) {
	for _, c := range []struct {
		attrs       map[string]string
		body        string
		org, reason string
	}{
		{map[string]string{"org": "acme"}, `{"org":"other"}`, "acme", ""},
		{nil, `{"org":"acme","event":"login"}`, "acme", ""},
		{nil, `{"user":"x"}`, "", ReasonNoOrg},
		{nil, ``, "", ReasonNoOrg},
		{nil, `not json`, "", ReasonBadJSON},
		{nil, `["acme"]`, "", ReasonBadJSON},
		{map[string]string{"org": "a b"}, ``, "a b", ReasonInvalidOrg},
		{nil, `{"org":""}`, "", ReasonInvalidOrg},
	} {
		org, reason := OrgOf(c.attrs, []byte(c.body))
		if org != c.org || reason != c.reason {
			t.Errorf("%v %q: got %q %q; want %q %q", c.attrs, c.body, org, reason, c.org, c.reason)
		}
	}
}
