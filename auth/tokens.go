package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/clock"
)

// MinTokenLength is the shortest token a tokens file may hold: a guessable
// token is refused at start, not discovered later.
const MinTokenLength = 16

// Tokens is a tokens file: one `TOKEN ROLE` a line, blank lines and lines
// starting with # ignored. Run re-reads it when it changes.
type Tokens struct {
	file string
	log  *slog.Logger

	mu      sync.RWMutex
	entries []token
	stamp   fileStamp
	lastErr string // only Run's goroutine touches it
	reloads *prometheus.CounterVec
}

type token struct {
	sum  [sha256.Size]byte
	role Role
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadTokens reads file. An unreadable or malformed file is an error naming
// the file and the line; no token is ever written into an error or a log.
// reg, when set, gets the reload counter.
func LoadTokens(file string, log *slog.Logger, reg prometheus.Registerer) (*Tokens, error) {
	t := &Tokens{file: file, log: log.With("component", "auth"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgscaler_api_tokens_reloads_total",
			Help: "Reloads of --api-tokens-file after it changed, by result (ok, or error: the last good tokens are kept).",
		}, []string{"result"})}
	st, entries, err := readTokens(file, false)
	if err != nil {
		return nil, err
	}
	t.entries, t.stamp = entries, st
	if reg != nil {
		reg.MustRegister(t.reloads)
	}
	return t, nil
}

func readTokens(file string, allowEmpty bool) (fileStamp, []token, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file: %w", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file: %w", err)
	}
	entries, err := parseTokens(data, allowEmpty)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file %s: %w", file, err)
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, entries, nil
}

// parseTokens reads the file's lines. No tokens at all is an error at
// start (a scaler nobody can call is a mistake), but on a reload it is how
// every token is revoked at once.
func parseTokens(data []byte, allowEmpty bool) ([]token, error) {
	var entries []token
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d has %d fields: expected TOKEN ROLE", n, len(fields))
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(fields[0]) < MinTokenLength {
			return nil, fmt.Errorf("line %d: the token is %d characters: expected at least %d", n, len(fields[0]), MinTokenLength)
		}
		sum := sha256.Sum256([]byte(fields[0]))
		if prev, ok := seen[sum]; ok {
			return nil, fmt.Errorf("line %d repeats the token of line %d: a token has one role", n, prev)
		}
		seen[sum] = n
		entries = append(entries, token{sum: sum, role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(entries) == 0 && !allowEmpty {
		return nil, fmt.Errorf("no tokens in it: expected lines of TOKEN ROLE")
	}
	return entries, nil
}

// Role returns the role of tok, or RoleNone. Every entry is compared, in
// constant time on hashes of equal length, so timing tells nothing of
// which token or how much of it matched.
func (t *Tokens) Role(tok string) Role {
	sum := sha256.Sum256([]byte(tok))
	t.mu.RLock()
	defer t.mu.RUnlock()
	role := RoleNone
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			role = e.role
		}
	}
	return role
}

// Run re-reads the file every interval while it changes, until ctx ends.
// A file that no longer reads is logged, and the last good tokens kept.
func (t *Tokens) Run(ctx context.Context, interval time.Duration) {
	clock.Every(ctx, interval, t.reload)
}

func (t *Tokens) reload() {
	fi, err := os.Stat(t.file)
	if err == nil {
		t.mu.RLock()
		same := t.stamp == fileStamp{mod: fi.ModTime(), size: fi.Size()}
		t.mu.RUnlock()
		if same {
			return
		}
	}
	st, entries, err := readTokens(t.file, true)
	if err != nil {
		// Logged once per distinct failure, not at every tick.
		if err.Error() != t.lastErr {
			t.log.Error("tokens file does not load; keeping the last good tokens", "err", err)
			t.lastErr = err.Error()
			t.reloads.WithLabelValues("error").Inc()
		}
		return
	}
	t.reloads.WithLabelValues("ok").Inc()
	t.lastErr = ""
	t.mu.Lock()
	t.entries, t.stamp = entries, st
	t.mu.Unlock()
	if len(entries) == 0 {
		t.log.Warn("tokens file reloaded with no tokens: every bearer token is refused", "file", t.file)
		return
	}
	t.log.Info("tokens file reloaded", "file", t.file, "tokens", len(entries))
}
