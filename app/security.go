package app

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/orgscaler/orgscaler/auth"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/tlsconfig"
)

// security is the transport and authentication of both ports, built from
// the options before anything is opened, so bad files stop the start.
type security struct {
	keda        credentials.TransportCredentials // nil: plaintext
	api         *tls.Config                      // the API port's, nil: plaintext
	tokens      *auth.Tokens                     // nil: no tokens file
	clientCerts bool                             // the API verifies client certificates
}

func newSecurity(o Options, reg prometheus.Registerer) (*security, error) {
	if err := o.TLS.Check("--tls"); err != nil {
		return nil, err
	}
	if err := o.APITLS.Check("--api-tls"); err != nil {
		return nil, err
	}
	sec := &security{clientCerts: o.APITLS.ClientCA != ""}
	if o.APITokensFile != "" {
		t, err := auth.LoadTokens(o.APITokensFile, o.Logger, reg)
		if err != nil {
			return nil, fmt.Errorf("--api-tokens-file: %w", err)
		}
		sec.tokens = t
	}
	if o.TLS.Cert != "" {
		cfg, err := tlsconfig.Server(o.TLS, o.Logger.With("component", "tls", "port", "keda"))
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		sec.keda = credentials.NewTLS(cfg)
	}
	if o.APITLS.Cert != "" {
		files := o.APITLS
		// A client certificate that is given must verify, but none is
		// required at the handshake: health probes carry none, and the
		// authorizer refuses every other call without credentials.
		files.ClientCertOptional = true
		cfg, err := tlsconfig.Server(files, o.Logger.With("component", "tls", "port", "api"))
		if err != nil {
			return nil, fmt.Errorf("--api-tls-cert/--api-tls-key: %w", err)
		}
		sec.api = cfg
	}
	return sec, nil
}

// authenticated reports whether the API checks who calls it.
func (s *security) authenticated() bool { return s.tokens != nil || s.clientCerts }

// checkAPIAddr refuses an unauthenticated API on an address other hosts
// can reach, unless the operator said so with --api-insecure.
func (s *security) checkAPIAddr(addr net.Addr, o Options) error {
	if s.authenticated() || o.APIInsecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("--api-listen %s is reachable from other hosts, and the API has no authentication: "+
		"give --api-tokens-file or --api-tls-client-ca, listen on 127.0.0.1, or pass --api-insecure to serve it unauthenticated anyway", o.APIListen)
}

// checkKEDAAddr refuses a KEDA port that any pod could reach and steer:
// on a non-loopback address it needs client certificates (mTLS), or
// --keda-insecure from an operator who fenced it off another way.
func checkKEDAAddr(addr net.Addr, o Options) error {
	if o.TLS.ClientCA != "" || o.KEDAInsecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("--listen %s is reachable from other hosts, and the KEDA port does not require client certificates, so anyone who reaches it can steer the answers: "+
		"give --tls-cert, --tls-key and --tls-client-ca (mTLS with KEDA's TriggerAuthentication), listen on 127.0.0.1, "+
		"or pass --keda-insecure if a NetworkPolicy admits only KEDA's operator", o.Listen)
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

func (s *security) authorizer(reg prometheus.Registerer) *auth.Authorizer {
	if !s.authenticated() {
		return nil
	}
	return auth.New(auth.Options{Tokens: s.tokens, ClientCerts: s.clientCerts, Needs: apiNeeds, Registerer: reg})
}

// apiNeeds is the API's policy: health for anyone (probes carry no
// credentials), activity and reflection for producers, the rest for admins.
func apiNeeds(fullMethod string) auth.Role {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch {
	case service == healthpb.Health_ServiceDesc.ServiceName:
		return auth.RoleAnyone
	case service == pb.ActivityService_ServiceDesc.ServiceName, strings.HasPrefix(service, "grpc.reflection."):
		return auth.RoleProducer
	default:
		return auth.RoleAdmin
	}
}

// logSecurity says at start how each port is protected, so an open API is
// never a surprise.
func (a *App) logSecurity() {
	keda := "plaintext"
	switch {
	case a.opts.TLS.ClientCA != "":
		keda = "mTLS: client certificates required"
	case a.opts.TLS.Cert != "":
		keda = "TLS"
	}
	var api []string
	if a.opts.APITLS.Cert != "" {
		api = append(api, "TLS")
	} else {
		api = append(api, "plaintext")
	}
	if a.sec.tokens != nil {
		api = append(api, "bearer tokens from "+a.opts.APITokensFile)
	}
	if a.opts.APITLS.ClientCA != "" {
		api = append(api, "client certificates")
	}
	if a.opts.TLS.ClientCA == "" && !isLoopback(a.kedaLis.Addr()) {
		a.log.Warn("the KEDA port requires no client certificate and is reachable from other hosts (--keda-insecure): only a NetworkPolicy stands between it and any pod",
			"addr", a.Addr(), "transport", keda)
	} else {
		a.log.Info("KEDA port security", "addr", a.Addr(), "transport", keda)
	}
	switch {
	case !a.sec.authenticated() && isLoopback(a.apiLis.Addr()):
		a.log.Info("the API has no authentication, so it listens on loopback only; give --api-tokens-file or --api-tls-client-ca to serve other hosts",
			"addr", a.APIAddr())
	case !a.sec.authenticated():
		a.log.Warn("the API has no authentication and is reachable from other hosts (--api-insecure): anyone who reaches it can wake or change any org",
			"addr", a.APIAddr())
	case a.sec.tokens != nil && a.opts.APITLS.Cert == "" && !isLoopback(a.apiLis.Addr()):
		a.log.Warn("bearer tokens travel in plaintext: serve the API with --api-tls-cert/--api-tls-key", "addr", a.APIAddr(), "security", strings.Join(api, ", "))
	default:
		a.log.Info("API security", "addr", a.APIAddr(), "security", strings.Join(api, ", "))
	}
	if a.repl != nil && a.peers.Token == "" {
		a.log.Warn("replication messages are not signed (no --peer-token-file): anything that may publish to the replication topic can change every replica's orgs",
			"topic", a.opts.ReplicationTopic)
	}
}
