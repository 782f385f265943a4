// Package auth decides who may call the scaler's activity and admin API:
// callers prove who they are with a bearer token from a tokens file or a
// client certificate, and each method needs a role.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Role is what a caller may do. Each role may do what the ones below it may.
type Role int

// The roles, in increasing power.
const (
	RoleNone     Role = iota
	RoleAnyone        // no credentials needed (health checks)
	RoleProducer      // send activity and hints
	RoleAdmin         // also read and change orgs
)

func (r Role) String() string {
	switch r {
	case RoleAnyone:
		return "anyone"
	case RoleProducer:
		return "producer"
	case RoleAdmin:
		return "admin"
	default:
		return "none"
	}
}

// ParseRole parses a role as written in a tokens file or a certificate.
func ParseRole(s string) (Role, error) {
	switch s {
	case "producer":
		return RoleProducer, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: expected producer or admin", s)
}

// Authorizer checks every call against the role its method needs.
type Authorizer struct {
	tokens   *Tokens // nil: no bearer tokens
	certs    bool    // client certificates carry roles
	needs    func(fullMethod string) Role
	failures *prometheus.CounterVec
}

// Options configure an Authorizer.
type Options struct {
	Tokens *Tokens // nil when there is no tokens file
	// ClientCerts: verified client certificates name their role in their
	// subject's organization (O=admin or O=producer).
	ClientCerts bool
	// Needs gives the role a method needs; RoleAdmin for anything it does
	// not know.
	Needs      func(fullMethod string) Role
	Registerer prometheus.Registerer
}

// New returns an Authorizer.
func New(o Options) *Authorizer {
	a := &Authorizer{tokens: o.Tokens, certs: o.ClientCerts, needs: o.Needs,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgscaler_api_auth_failures_total",
			Help: "API calls refused, by gRPC code (Unauthenticated: no or bad credentials; PermissionDenied: a role too weak).",
		}, []string{"code"})}
	if o.Registerer != nil {
		o.Registerer.MustRegister(a.failures)
	}
	return a
}

// Unary is the interceptor for unary calls.
func (a *Authorizer) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := a.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Stream is the interceptor for streams.
func (a *Authorizer) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := a.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

func (a *Authorizer) check(ctx context.Context, method string) error {
	need := a.needs(method)
	if need <= RoleAnyone {
		return nil
	}
	role, who, err := a.identify(ctx)
	if err != nil {
		a.failures.WithLabelValues(codes.Unauthenticated.String()).Inc()
		return err
	}
	if role < need {
		a.failures.WithLabelValues(codes.PermissionDenied.String()).Inc()
		return status.Errorf(codes.PermissionDenied, "%s has role %s; %s needs %s", who, role, method, need)
	}
	return nil
}

// identify returns the strongest role the call's credentials give: a bearer
// token, when one is sent, decides alone; otherwise a client certificate.
func (a *Authorizer) identify(ctx context.Context) (Role, string, error) {
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		if a.tokens == nil {
			return RoleNone, "", status.Error(codes.Unauthenticated, "a bearer token was sent, but this scaler takes no tokens (no --api-tokens-file): use a client certificate")
		}
		scheme, tok, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
			return RoleNone, "", status.Error(codes.Unauthenticated, `authorization header is malformed: expected "Bearer TOKEN"`)
		}
		role := a.tokens.Role(tok)
		if role == RoleNone {
			return RoleNone, "", status.Error(codes.Unauthenticated, "bearer token not recognised: it is not in --api-tokens-file")
		}
		return role, "the bearer token", nil
	}
	if cert := peerCert(ctx); cert != nil && a.certs {
		return certRole(cert), fmt.Sprintf("client certificate %q", cert.Subject.String()), nil
	}
	return RoleNone, "", status.Error(codes.Unauthenticated, a.noCredentials())
}

func (a *Authorizer) noCredentials() string {
	switch {
	case a.tokens != nil && a.certs:
		return "no credentials: send a bearer token (scalerctl --token-file) or a client certificate (scalerctl --cert/--key)"
	case a.tokens != nil:
		return "no credentials: send a bearer token (scalerctl --token-file)"
	default:
		return "no credentials: send a client certificate (scalerctl --cert/--key)"
	}
}

func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// certRole reads the role from the certificate's organizations: the
// strongest one named, RoleNone if none is a role.
func certRole(c *x509.Certificate) Role {
	switch {
	case slices.Contains(c.Subject.Organization, "admin"):
		return RoleAdmin
	case slices.Contains(c.Subject.Organization, "producer"):
		return RoleProducer
	}
	return RoleNone
}

// HTTP checks each HTTP request (the Connect protocol, whose paths are
// the gRPC method names) as the interceptors check calls: the same
// credentials (an Authorization header, a verified client certificate),
// the same roles and the same errors, written in the protocol the client
// speaks.
func (a *Authorizer) HTTP(next http.Handler) http.Handler {
	errs := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if v := r.Header.Get("Authorization"); v != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", v))
		}
		if r.TLS != nil {
			ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: *r.TLS}})
		}
		if err := a.check(ctx, r.URL.Path); err != nil {
			st := status.Convert(err)
			_ = errs.Write(w, r, connect.NewError(connect.Code(st.Code()), errors.New(st.Message())))
			return
		}
		next.ServeHTTP(w, r)
	})
}
