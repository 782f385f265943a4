package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/orgscaler/orgscaler/auth"
)

// newAPIServer serves the API port: gRPC calls (HTTP/2, application/grpc)
// go to the gRPC server, with its interceptors, health and reflection;
// everything else to the Connect handlers of the same methods (HTTP/JSON,
// HTTP/1.1 or HTTP/2, and gRPC-Web), behind the same authorizer. With
// tlsCfg the port is TLS (HTTP/2 through the ALPN tlsconfig offers); without it, plaintext
// HTTP/1.1 and HTTP/2 (h2c, as gRPC clients dial).
func newAPIServer(g *grpc.Server, connect http.Handler, authz *auth.Authorizer, tlsCfg *tls.Config, maxStreams int, idle time.Duration) *http.Server {
	if authz != nil {
		connect = authz.HTTP(connect)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	if tlsCfg == nil {
		protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type")) {
				g.ServeHTTP(w, r)
				return
			}
			connect.ServeHTTP(w, r)
		}),
		TLSConfig:         tlsCfg,
		Protocols:         &protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ReadHeaderTimeout: 10 * time.Second,
		// Keep-alive and h2c connections with no call in flight are closed
		// (HTTP/2 with a GOAWAY, which gRPC clients follow by redialling):
		// an idle connection holds a file descriptor KEDA's port needs.
		IdleTimeout: idle,
	}
}

// apiConnLimit is the most connections the API port holds open at once:
// n, or when n is 0 a quarter of the process's file-descriptor limit
// (at most DefaultAPIMaxConnections). Past it, new connections wait in the
// kernel's accept queue, holding no descriptor of ours, so however many
// connections strangers open to the API, KEDA's port, Badger and Pub/Sub
// keep theirs. More than half the limit is refused.
func apiConnLimit(n int) (int, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("read the file-descriptor limit: %w", err)
	}
	fds := int(min(r.Cur, 1<<30))
	if n == 0 {
		return max(1, min(DefaultAPIMaxConnections, fds/4)), nil
	}
	if n < 1 || n > fds/2 {
		return 0, fmt.Errorf("--api-max-connections is %d: expected 1 to half the process's file-descriptor limit (ulimit -n is %d, so at most %d)", n, fds, fds/2)
	}
	return n, nil
}

// isGRPC reports whether a content type is gRPC's own (not gRPC-Web, which
// the Connect handlers serve).
func isGRPC(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

func serveAPI(s *http.Server, lis net.Listener) error {
	var err error
	if s.TLSConfig != nil {
		err = s.ServeTLS(lis, "", "")
	} else {
		err = s.Serve(lis)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the API: %w", err)
	}
	return nil
}

// stopAPI stops the API port: no new connection or call, the calls in
// flight finish (activity streams end when the app's done closes), for at
// most grace; then whatever is left is cut.
func stopAPI(s *http.Server, g *grpc.Server, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		_ = s.Close()
	}
	g.Stop()
}
