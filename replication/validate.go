package replication

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Replication messages are checked before anything in them is applied:
// publish rights on the topic alone must not steer the fleet.
//   - With a key (from the fleet's peer token), every message carries an
//     HMAC of its body and its process attributes; one without a valid one
//     is dropped.
//   - A kind's Hold (org changes have one) drops an item naming no valid
//     org and holds every stamp (activity, settings, deletes) further
//     ahead than the skew bound to it, as applyHints holds hints, so a fast clock (or a forged
//     MaxInt64) cannot keep an org warm, freeze a setting or overflow the
//     hybrid logical clock.
const attrMAC = "mac"

// DefaultMaxClockSkew is how far ahead of this replica's clock a stamp
// from another may be before it is held to that bound.
const DefaultMaxClockSkew = 30 * time.Second

// KeyFrom derives the replication messages' HMAC key from the fleet's peer
// token: every replica holds the same one, and the key is not the token.
func KeyFrom(token string) []byte {
	if token == "" {
		return nil
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("orgscaler replication messages v1"))
	return m.Sum(nil)
}

// mac is the HMAC of a message's body and process attributes.
func mac(key, data []byte, attrs map[string]string) string {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	m.Write([]byte{0})
	m.Write([]byte(attrs[attrInstance]))
	m.Write([]byte{0})
	m.Write([]byte(attrs[attrStarted]))
	m.Write([]byte{0})
	m.Write([]byte(attrs[attrSent]))
	return hex.EncodeToString(m.Sum(nil))
}

// sign adds the HMAC to attrs, when there is a key.
func (r *Replicator) sign(data []byte, attrs map[string]string) map[string]string {
	if r.opts.Key != nil {
		attrs[attrMAC] = mac(r.opts.Key, data, attrs)
	}
	return attrs
}

// authentic says whether m carries a valid HMAC, or there is no key.
func (r *Replicator) authentic(m *Message) bool {
	if r.opts.Key == nil {
		return true
	}
	got, err := hex.DecodeString(m.Attributes[attrMAC])
	if err != nil {
		return false
	}
	want, _ := hex.DecodeString(mac(r.opts.Key, m.Data, m.Attributes))
	return hmac.Equal(got, want)
}

// reject drops m (acknowledged: it will never apply), counted by reason
// and logged at most every 10 s.
func (r *Replicator) reject(m *Message, reason, why string) {
	r.m.rejected.WithLabelValues(reason).Inc()
	r.warnBad.Do(func() {
		r.log.Warn("dropped a replication message (logged at most every 10s; orgscaler_replication_rejected_total counts them all)",
			"reason", reason, "why", why, "id", m.ID)
	})
	m.Ack()
}
