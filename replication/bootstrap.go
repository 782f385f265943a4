package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Peers says where the other replicas' API ports are: HOST:PORT entries,
// each host resolved to every address it has (a headless Service's name
// gives every replica, this one included).
type Peers struct {
	Addrs []string
	// Token, when set, is the bearer token presented to peers' APIs (an
	// admin token: a snapshot holds every org).
	Token string
	// Self is this replica's id: a peer answering with it is this replica.
	Self   string
	Logger *slog.Logger
	// TLS, when set, dials peers over TLS (their API is served with
	// --api-tls-cert); the server name checked is the --peers entry's host.
	TLS *tls.Config
	// ChunkTimeout bounds the wait for each chunk of a peer's snapshot
	// (default DefaultChunkTimeout): a peer that stalls mid-snapshot is
	// given up, and the next one asked, instead of holding a joining
	// replica not ready, or anti-entropy, forever.
	ChunkTimeout time.Duration
}

// DefaultChunkTimeout is far above what a chunk of 1,000 orgs takes.
const DefaultChunkTimeout = 30 * time.Second

// peer is one address a --peers entry resolved to.
type peer struct {
	addr string // IP:PORT
	host string // the entry's host: the name a peer's certificate holds
}

func (p peer) String() string { return p.addr }

// ErrNoPeerReady is a bootstrap that found other replicas, none of which
// could give a snapshot yet.
var ErrNoPeerReady = errors.New("no peer could give a snapshot yet")

// bootstrap loads a snapshot of every kind from the first ready peer into
// the stores, telling seen (when set) every org it names. It returns 0,
// nil when there is no other replica at all (the first of a new fleet
// starts empty), and ErrNoPeerReady (wrapped, with each peer's reason)
// when there are others but none is ready: the caller tries again, and
// stays not ready meanwhile.
func (r *Replicator) bootstrap(ctx context.Context, p Peers, seen func(org string)) (items int, from string, err error) {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addrs, err := resolve(ctx, p.Addrs)
	if err != nil {
		return 0, "", err
	}
	others, empty := 0, 0
	var reasons []string
	for _, addr := range addrs {
		n, replica, err := r.load(ctx, p, addr, seen)
		switch {
		case err == nil:
			log.Info("loaded a snapshot from a peer", "peer", addr, "replica", replica, "changes", n)
			return n, replica, nil
		case errors.Is(err, errSelf), errors.Is(err, syscall.ECONNREFUSED):
			continue // this replica, or no replica running there
		case errors.Is(err, errEmpty):
			empty++
			continue
		}
		others++
		reasons = append(reasons, fmt.Sprintf("%s: %v", addr, err))
	}
	if others == 0 {
		// No other replica, or only ones as empty as this one: there is no
		// state anywhere to wait for.
		log.Info("no peer holds any state: starting empty, as the first of the fleet", "peers", strings.Join(p.Addrs, ","), "empty_peers", empty)
		return 0, "", nil
	}
	return 0, "", fmt.Errorf("%w: %s", ErrNoPeerReady, strings.Join(reasons, "; "))
}

var (
	errSelf  = errors.New("this replica")
	errEmpty = errors.New("a peer as empty as this one, loading too")
)

// resolve turns HOST:PORT entries into one address per IP.
func resolve(ctx context.Context, entries []string) ([]peer, error) {
	var out []peer
	for _, e := range entries {
		host, port, err := net.SplitHostPort(strings.TrimSpace(e))
		if err != nil {
			return nil, fmt.Errorf("--peers entry %q: expected HOST:PORT: %w", e, err)
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			// A headless Service with no ready pod yet has no addresses:
			// no other replica.
			var dns *net.DNSError
			if errors.As(err, &dns) && dns.IsNotFound {
				continue
			}
			return nil, fmt.Errorf("--peers entry %q: %w", e, err)
		}
		for _, ip := range ips {
			out = append(out, peer{addr: net.JoinHostPort(ip, port), host: host})
		}
	}
	return out, nil
}

// load asks one peer for its snapshot and applies it.
func (r *Replicator) load(ctx context.Context, p Peers, addr peer, seen func(string)) (int, string, error) {
	// Nothing listening there is no replica, not one that is down.
	probe, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr.addr)
	if err != nil {
		return 0, "", err
	}
	_ = probe.Close()
	client, ctx, closeConn, err := p.dial(ctx, addr)
	if err != nil {
		return 0, "", err
	}
	defer closeConn()
	d, err := digestOf(ctx, client)
	if err != nil {
		return 0, "", err
	}
	return r.loadFrom(ctx, p, client, d, r.ks.joinOnly(), seen)
}

// dial connects to a peer's API, with this replica's token on ctx.
func (p Peers) dial(ctx context.Context, addr peer) (pb.AdminServiceClient, context.Context, func(), error) {
	creds := insecure.NewCredentials()
	if p.TLS != nil {
		cfg := p.TLS.Clone()
		cfg.ServerName = addr.host
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, ctx, nil, err
	}
	if p.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.Token)
	}
	return pb.NewAdminServiceClient(conn), ctx, func() { _ = conn.Close() }, nil
}

func digestOf(ctx context.Context, client pb.AdminServiceClient) (*pb.DigestResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return client.Digest(cctx, &pb.DigestRequest{})
}

// loadFrom applies the snapshot of the peer whose digest is d, with the
// JoinOnly kinds (the ledger's hours) when withJoinOnly.
func (r *Replicator) loadFrom(ctx context.Context, p Peers, client pb.AdminServiceClient, d *pb.DigestResponse, withJoinOnly bool, seen func(string)) (int, string, error) {
	switch {
	case d.GetReplica() == p.Self:
		return 0, "", errSelf
	case d.GetLoading() && d.GetOrgs() == 0:
		return 0, "", errEmpty
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := p.ChunkTimeout
	if idle <= 0 {
		idle = DefaultChunkTimeout
	}
	stalled := time.AfterFunc(idle, cancel)
	defer stalled.Stop()
	stream, err := client.Snapshot(ctx, &pb.SnapshotRequest{Usage: withJoinOnly})
	if err != nil {
		return 0, "", err
	}
	n := 0
	for {
		chunk, err := stream.Recv()
		if !stalled.Stop() {
			return n, "", fmt.Errorf("snapshot from %s: no chunk within %s", d.GetReplica(), idle)
		}
		stalled.Reset(idle)
		if errors.Is(err, io.EOF) {
			return n, d.GetReplica(), nil
		}
		if err != nil {
			return n, "", err
		}
		applied, err := r.ks.applyChunk(chunk, seen, r.countApplied)
		n += applied
		if err != nil {
			return n, "", fmt.Errorf("apply the snapshot: %w", err)
		}
	}
}

// Digester is this replica's own digest; activity.Store provides it.
type Digester interface {
	Digest() ([32]byte, int)
}

// antiEntropy compares this replica's digest with a random peer's after
// first, then every interval, and, when they differ, applies that peer's
// snapshot. Merges
// only ever move state forward, so this heals whatever the log did not
// carry (a message held for a crashed process, a change accepted but not
// yet published when a replica died) without undoing anything; the peer
// does the same with this replica. Runs until ctx ends.
func (r *Replicator) antiEntropy(ctx context.Context, p Peers, own Digester, first, every time.Duration) {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(every)
		addrs, err := resolve(ctx, p.Addrs)
		if err != nil || len(addrs) == 0 {
			continue
		}
		addr := addrs[time.Now().UnixNano()%int64(len(addrs))]
		if n, replica, err := r.pullIfDifferent(ctx, p, addr, own); err == nil && n > 0 {
			log.Info("digests differed: applied a peer's snapshot", "peer", addr, "replica", replica, "changes", n)
		}
	}
}

func (r *Replicator) pullIfDifferent(ctx context.Context, p Peers, addr peer, own Digester) (int, string, error) {
	client, ctx, closeConn, err := p.dial(ctx, addr)
	if err != nil {
		return 0, "", err
	}
	defer closeConn()
	d, err := digestOf(ctx, client)
	if err != nil || d.GetReplica() == p.Self || d.GetLoading() {
		return 0, "", err
	}
	sum, n := own.Digest()
	if fmt.Sprintf("%x", sum) == d.GetDigest() && int64(n) == d.GetOrgs() {
		return 0, "", nil
	}
	return r.loadFrom(ctx, p, client, d, false, nil) // the log carries the JoinOnly kinds
}
