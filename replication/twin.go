package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/clock"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Every message carries the process that published it: its replica id,
// an instance nonce drawn at start, and when that instance started. Two
// live processes with one --replica-id share one subscription and split
// its messages, and each would skip the other's as its own; the nonce
// tells them apart, and the one that started later refuses to serve.
const (
	attrInstance = "instance"
	attrStarted  = "started" // Unix nanoseconds on the publisher's clock
	// twinMargin is how long after this process's first message another
	// instance's must have been published to prove that instance alive.
	// Both times are Pub/Sub's, so no clock's skew enters: a crashed
	// predecessor's messages were all published before this process's
	// first one.
	twinMargin = time.Second
	// heartbeatEvery is how often a replica with nothing to publish says
	// it is alive, so an idle twin is found too.
	heartbeatEvery = 30 * time.Second
)

// TwinError says another live process uses this replica's id and started
// first: this one refuses to serve.
type TwinError struct {
	Replica  string
	Other    string    // the other process's instance nonce
	Started  time.Time // when the other started, on its clock
	Detected time.Time
}

func (e *TwinError) Error() string {
	return fmt.Sprintf("another live process uses --replica-id %s (instance %s, started %s, before this one): two processes with one id split its subscription's messages and each skips the other's changes, so this one refuses to serve; give each replica its own --replica-id (a StatefulSet's pod name)",
		e.Replica, e.Other, e.Started.UTC().Format(time.RFC3339))
}

func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// attributes are what every message of this process carries.
func (r *Replicator) attributes() map[string]string {
	return map[string]string{attrInstance: r.instance, attrStarted: strconv.FormatInt(r.started.UnixNano(), 10),
		attrSent: strconv.FormatInt(r.now().UnixNano(), 10)}
}

// twin looks at a message carrying this replica's id: nil when it is this
// process's, or a predecessor's, or a twin that started later (which will
// refuse itself), or when none of this process's messages has come back
// yet to compare with; a *TwinError when a live twin started first.
func (r *Replicator) twin(m *Message) *TwinError {
	other := m.Attributes[attrInstance]
	first := r.firstOwn.Load() // 0 until one of this process's messages came back
	if other == "" || other == r.instance || first == 0 || !m.PublishTime.After(time.Unix(0, first).Add(twinMargin)) {
		return nil
	}
	ns, err := strconv.ParseInt(m.Attributes[attrStarted], 10, 64)
	if err != nil {
		return nil
	}
	started := time.Unix(0, ns)
	if !started.Before(r.started) {
		r.warnTwin.Do(func() {
			r.log.Error("another live process uses this --replica-id and started after this one: it refuses to serve; give each replica its own id",
				"replica", r.opts.Replica, "other_instance", other)
		})
		return nil
	}
	return &TwinError{Replica: r.opts.Replica, Other: other, Started: started, Detected: r.now()}
}

// heartbeat publishes an empty message every heartbeatEvery until ctx
// ends, so a twin sees this process even when it has nothing to say.
func (r *Replicator) heartbeat(ctx context.Context) {
	data, _ := proto.Marshal(&pb.ChangeBatch{Replica: r.opts.Replica})
	clock.Every(ctx, heartbeatEvery, func() {
		hctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		defer cancel()
		if err := r.tr.Publish(hctx, []Outgoing{{Data: data, Attributes: r.sign(data, r.attributes())}}); err != nil {
			r.log.Debug("heartbeat not published; the next one may be", "err", err)
		}
	})
}
