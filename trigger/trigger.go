// Package trigger reads a KEDA trigger's metadata into the workload it
// names (kind, org, subscription, sizing, keep-alive policy), refusing
// with an error that names the key, the value and what was expected, and
// names the workload's metric.
package trigger

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/orgscaler/orgscaler/orgid"
	"github.com/orgscaler/orgscaler/pool"
)

// Kind is what a workload is.
type Kind string

// The workload kinds a trigger may name.
const (
	KindPynode Kind = "pynode" // an org's app server: warm while the org is active
	KindModel  Kind = "model"  // an org's model: warm while the org is active, and on its backlog
	KindWorker Kind = "worker" // a queue worker: active while its subscription has backlog
)

// Metadata keys of a trigger that are ours.
const (
	KeyWorkload           = "workload"
	KeyOrg                = "org"
	KeySubscription       = "subscription"
	KeyMessagesPerReplica = "messagesPerReplica"
	KeyActivationBacklog  = "activationBacklog"
	KeyWarmFor            = "warmFor"
	KeyGPUsPerReplica     = "gpusPerReplica"
	KeyGPUType            = "gpuType"
	KeyPool               = "pool"
)

// Keys are the metadata keys the scaler reads (README's trigger metadata
// reference lists each); any other but KEDA's own is refused.
var Keys = []string{KeyWorkload, KeyOrg, KeySubscription, KeyMessagesPerReplica, KeyActivationBacklog, KeyWarmFor,
	KeyGPUsPerReplica, KeyGPUType, KeyPool, KeyKeepAlive, KeyColdStart, KeyMinWarm}

// MaxGPUsPerReplica bounds gpusPerReplica: no node has more, and the
// GPU-hours arithmetic stays far from overflow.
const MaxGPUsPerReplica = 1024

// kedaKeys are metadata keys KEDA itself reads from an external trigger, or
// that KEDA's docs show on every external trigger; they are not ours to reject.
var kedaKeys = map[string]bool{
	"scalerAddress":    true,
	"enableTLS":        true,
	"unsafeSsl":        true,
	"caCert":           true,
	"tlsClientCert":    true,
	"tlsClientKey":     true,
	"tlsCertFile":      true,
	"metricType":       true,
	"activationTarget": true,
}

var (
	// Pub/Sub's own rules: project ids are 6-30 lowercase letters, digits
	// and hyphens (older domain-scoped ids carry a "domain:" prefix);
	// subscription ids are 3-255 characters starting with a letter.
	gpuTypePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,31}$`)
	subPattern     = regexp.MustCompile(`^projects/([a-z][a-z0-9.:-]{0,99})/subscriptions/([A-Za-z][A-Za-z0-9._~+%-]{2,254})$`)
)

// Workload is a trigger's metadata, parsed and checked.
type Workload struct {
	Kind               Kind
	Org                string // empty only for a worker without an org
	Subscription       string // projects/P/subscriptions/S, or empty
	MessagesPerReplica int64
	ActivationBacklog  int64
	WarmFor            time.Duration // zero: the org's idle window
	// GPUsPerReplica and GPUType price the GPU-hours report; only in a
	// pool does GPUsPerReplica change an answer (what a replica costs the
	// pool). A pynode holds no GPU unless its trigger says so; a worker or
	// a model holds one.
	GPUsPerReplica int64
	GPUType        string
	// KeepAlive is the trigger's keep-alive policy, instead of a window.
	KeepAlive KeepAlive
	// Pool is the GPU pool the workload's replicas are granted from ("":
	// none; each costs GPUsPerReplica of it).
	Pool string
}

// MetadataError says which metadata key was wrong, what it held, and what
// was expected. The scaler turns it into gRPC InvalidArgument.
type MetadataError struct {
	Key      string
	Value    string
	Expected string
	Missing  bool
	Unknown  bool // the key is not one of ours nor KEDA's
}

func (e *MetadataError) Error() string {
	if e.Unknown {
		return fmt.Sprintf("metadata %q (value %q) is not a known key: %s", e.Key, e.Value, e.Expected)
	}
	if e.Missing {
		return fmt.Sprintf("metadata %q is missing: expected %s", e.Key, e.Expected)
	}
	return fmt.Sprintf("metadata %q is %q: expected %s", e.Key, e.Value, e.Expected)
}

func validateOrg(field, org string) error {
	if org == "" {
		return &MetadataError{Key: field, Missing: true, Expected: orgid.Expected}
	}
	if !orgid.Valid(org) {
		return &MetadataError{Key: field, Value: Clip(org), Expected: orgid.Expected}
	}
	return nil
}

// ParseMetadata turns a trigger's metadata into a Workload. Keys KEDA adds
// are ignored; any other unknown key is an error, so a typo never silently
// falls back to a default. Errors are *MetadataError.
func ParseMetadata(md map[string]string) (Workload, error) {
	if err := checkKeys(md); err != nil {
		return Workload{}, err
	}
	w := Workload{MessagesPerReplica: 1}
	kind, ok := md[KeyWorkload]
	switch Kind(kind) {
	case KindPynode, KindModel, KindWorker:
		w.Kind = Kind(kind)
	default:
		return Workload{}, &MetadataError{Key: KeyWorkload, Value: Clip(kind), Missing: !ok,
			Expected: `one of "pynode", "model", "worker"`}
	}
	if org, ok := md[KeyOrg]; ok || w.Kind != KindWorker {
		if err := validateOrg(KeyOrg, org); err != nil {
			return Workload{}, err
		}
		w.Org = org
	}
	if sub, ok := md[KeySubscription]; ok || w.Kind == KindWorker {
		if err := validateSubscription(KeySubscription, sub); err != nil {
			return Workload{}, err
		}
		if w.Kind == KindPynode {
			return Workload{}, &MetadataError{Key: KeySubscription, Value: Clip(sub),
				Expected: `no subscription for workload "pynode" (only "worker" and "model" scale on a backlog)`}
		}
		w.Subscription = sub
	}
	var err error
	if w.MessagesPerReplica, err = intKey(md, KeyMessagesPerReplica, 1, 1); err != nil {
		return Workload{}, err
	}
	if w.ActivationBacklog, err = intKey(md, KeyActivationBacklog, 0, 0); err != nil {
		return Workload{}, err
	}
	if w.GPUsPerReplica, err = intKey(md, KeyGPUsPerReplica, defaultGPUs(w.Kind), 0); err != nil {
		return Workload{}, err
	}
	if v, ok := md[KeyGPUType]; ok {
		if !ValidGPUType(v) {
			return Workload{}, &MetadataError{Key: KeyGPUType, Value: Clip(v),
				Expected: "1 to 32 lower-case letters, digits, '.' or '-', starting with a letter or digit, such as a100 or nvidia-l4"}
		}
		w.GPUType = v
	}
	if v, ok := md[KeyPool]; ok {
		if !pool.ValidName(v) {
			return Workload{}, &MetadataError{Key: KeyPool, Value: Clip(v), Expected: pool.NameExpected + ", naming a pool made with scalerctl pool set"}
		}
		w.Pool = v
	}
	if w.GPUsPerReplica > MaxGPUsPerReplica {
		return Workload{}, &MetadataError{Key: KeyGPUsPerReplica, Value: md[KeyGPUsPerReplica],
			Expected: fmt.Sprintf("an integer from 0 to %d", MaxGPUsPerReplica)}
	}
	if v, ok := md[KeyWarmFor]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Workload{}, &MetadataError{Key: KeyWarmFor, Value: Clip(v),
				Expected: `a Go duration greater than zero, such as "30m" or "1h"`}
		}
		if w.Org == "" {
			return Workload{}, &MetadataError{Key: KeyWarmFor, Value: v,
				Expected: `an "org" as well: warmFor counts from the org's last activity`}
		}
		w.WarmFor = d
	}
	if err := parseKeepAlive(md, &w); err != nil {
		return Workload{}, err
	}
	return w, nil
}

// ValidSubscription reports whether sub is a full Pub/Sub subscription name.
func ValidSubscription(sub string) bool { return subPattern.MatchString(sub) }

func validateSubscription(field, sub string) error {
	const expected = `a subscription name "projects/PROJECT/subscriptions/SUBSCRIPTION"`
	if sub == "" {
		return &MetadataError{Key: field, Missing: true, Expected: expected}
	}
	if !ValidSubscription(sub) {
		return &MetadataError{Key: field, Value: Clip(sub), Expected: expected}
	}
	return nil
}

// Bounds on a trigger's metadata: ours are short words and names, so
// anything past them is a mistake or an attack, refused before it is kept.
// KEDA's own TLS keys may hold PEM certificates, hence their larger bound.
const (
	MaxMetadataKeys     = 64
	MaxMetadataValue    = 1 << 10
	MaxMetadataPEMValue = 16 << 10
)

var pemKeys = map[string]bool{"caCert": true, "tlsClientCert": true, "tlsClientKey": true}

func checkBounds(md map[string]string) error {
	if len(md) > MaxMetadataKeys {
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		k := keys[MaxMetadataKeys]
		return &MetadataError{Key: Clip(k), Value: Clip(md[k]), Expected: fmt.Sprintf("at most %d metadata keys, got %d", MaxMetadataKeys, len(md))}
	}
	for k, v := range md {
		limit := MaxMetadataValue
		if pemKeys[k] {
			limit = MaxMetadataPEMValue
		}
		if len(k) > MaxMetadataValue || len(v) > limit {
			return &MetadataError{Key: Clip(k), Value: Clip(v), Expected: fmt.Sprintf("a key and value of at most %d bytes each (this value has %d)", limit, len(v))}
		}
	}
	return nil
}

func checkKeys(md map[string]string) error {
	if err := checkBounds(md); err != nil {
		return err
	}
	var unknown []string
	for k := range md {
		if !slices.Contains(Keys, k) && !kedaKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	k := unknown[0]
	return &MetadataError{Key: Clip(k), Value: Clip(md[k]), Unknown: true, Expected: "the known keys are " + strings.Join(Keys, ", ")}
}

func intKey(md map[string]string, key string, def, minimum int64) (int64, error) {
	v, ok := md[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < minimum {
		return 0, &MetadataError{Key: key, Value: Clip(v), Expected: fmt.Sprintf("an integer >= %d", minimum)}
	}
	return n, nil
}

// Clip keeps error messages short when a caller sends a huge value.
func Clip(s string) string {
	const maxLen = 200
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "..."
}

// MetricName is stable and unique per workload: a readable part for
// `kubectl get hpa`, and a hash of everything that makes the workload what
// it is, so two triggers that differ only in case or punctuation never share
// a metric.
func (w Workload) MetricName() string {
	var b strings.Builder
	b.WriteString(string(w.Kind))
	if w.Org != "" {
		b.WriteByte('-')
		b.WriteString(sanitize(w.Org, 60))
	}
	if w.Subscription != "" {
		b.WriteByte('-')
		b.WriteString(sanitize(w.Subscription[strings.LastIndexByte(w.Subscription, '/')+1:], 60))
	}
	// The hash input is "kind\0org\0subscription\0N\0N\0N" (the numbers
	// in decimal, warmFor in nanoseconds), built without fmt: KEDA's every
	// call computes this name.
	in := make([]byte, 0, 64+len(w.Org)+len(w.Subscription))
	for _, part := range []string{string(w.Kind), w.Org, w.Subscription} {
		in = append(append(in, part...), 0)
	}
	in = append(strconv.AppendInt(in, w.MessagesPerReplica, 10), 0)
	in = append(strconv.AppendInt(in, w.ActivationBacklog, 10), 0)
	in = strconv.AppendInt(in, int64(w.WarmFor), 10)
	if k := w.KeepAlive; k.On() {
		// Appended only when set, so the names of triggers without a
		// policy stay what they were.
		in = append(append(in, 0), k.Policy...)
		in = append(strconv.AppendInt(append(in, 0), int64(k.ColdStart), 10), 0)
		in = strconv.AppendInt(in, int64(k.MinWarm), 10)
	}
	h := fnv.New32a()
	_, _ = h.Write(in)
	hex := strconv.FormatUint(uint64(h.Sum32()), 16)
	b.WriteByte('-')
	b.WriteString("00000000"[len(hex):])
	b.WriteString(hex)
	return b.String()
}

// sanitize keeps lowercase letters and digits, turning anything else into
// '-', so the name is a valid Kubernetes metric name.
func sanitize(s string, maxLen int) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < maxLen; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		default:
			out = append(out, '-')
		}
	}
	return string(out)
}

// ValidGPUType says whether s can name a GPU type (gpuType, and Knative's
// orgscaler.io/gpu-type label): what scalerctl report prices by.
func ValidGPUType(s string) bool { return gpuTypePattern.MatchString(s) }

// defaultGPUs is gpusPerReplica when a trigger does not say: a pynode is
// an app server (no GPU), a worker or a model holds one.
func defaultGPUs(k Kind) int64 {
	if k == KindPynode {
		return 0
	}
	return 1
}
