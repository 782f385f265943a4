package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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
func newAPIServer(g *grpc.Server, connect http.Handler, authz *auth.Authorizer, tlsCfg *tls.Config, maxStreams int) *http.Server {
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
	}
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
