// Package orgid says what an org id is: every place that takes one from
// outside (activity, triggers, the feed, replication) checks it here.
package orgid

// MaxLen is the longest org id accepted.
const MaxLen = 128

// Expected says what an org id must be, for error messages.
const Expected = "1 to 128 characters of letters, digits, '.', '_', '-', ':'"

// Valid reports whether org is a well-formed org id: 1 to 128 of
// [A-Za-z0-9._:-]. A loop, not a regexp: every activity event is checked.
func Valid(org string) bool {
	if len(org) == 0 || len(org) > MaxLen {
		return false
	}
	for i := 0; i < len(org); i++ {
		switch c := org[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
