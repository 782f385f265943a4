// Package tlsconfig builds the TLS configurations of the scaler's ports from
// PEM files on disk, and picks up rotated files (cert-manager, a Secret
// remounted by the kubelet) without a restart.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of a server.
type Files struct {
	Cert     string // the server's certificate chain
	Key      string // its private key
	ClientCA string // CA bundle client certificates must chain to; "" for TLS without client certificates
	// ClientCertOptional accepts a connection without a client certificate
	// (a certificate that is given must still verify): for a port where
	// bearer tokens are another way in.
	ClientCertOptional bool
}

// Enabled reports whether any file is named.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.ClientCA != "" }

// Check reports a missing half: a key without a certificate, or a client CA
// without a server certificate. flag is the flag prefix, e.g. "--tls" or
// "--api-tls".
func (f Files) Check(flag string) error {
	switch {
	case (f.Cert == "") != (f.Key == ""):
		return fmt.Errorf("%s-cert and %s-key go together: both or neither (got cert %q, key %q)", flag, flag, f.Cert, f.Key)
	case f.ClientCA != "" && f.Cert == "":
		return fmt.Errorf("%s-client-ca needs %s-cert and %s-key: client certificates are checked only over TLS", flag, flag, flag)
	}
	return nil
}

// Server loads the files (checked with Check first) and returns a server configuration that re-reads
// them when they change, checked at each handshake (three stat calls, and a
// load only on change). Files that do not load at start are an error; a
// rotation that does not load is logged and the last good files are kept.
func Server(f Files, log *slog.Logger) (*tls.Config, error) {
	r := &reloader{files: f, log: log}
	st := r.stamps()
	cfg, err := load(f)
	if err != nil {
		return nil, err
	}
	r.cur, r.stamp = cfg, st
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.config, NextProtos: nextProtos}, nil
}

// nextProtos are offered through ALPN on every served port: HTTP/2, which
// gRPC needs, and HTTP/1.1 for the API's HTTP/JSON clients.
var nextProtos = []string{"h2", "http/1.1"}

type reloader struct {
	files Files
	log   *slog.Logger

	mu    sync.Mutex
	stamp [3]stamp
	cur   *tls.Config
}

// stamp identifies a version of a file without reading it. A Secret
// remounted by the kubelet swaps a symlink, which Stat follows.
type stamp struct {
	mod  time.Time
	size int64
	err  bool
}

func (r *reloader) stamps() [3]stamp {
	var s [3]stamp
	for i, name := range []string{r.files.Cert, r.files.Key, r.files.ClientCA} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			s[i].err = true
			continue
		}
		s[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s
}

func (r *reloader) config(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stamps()
	if st == r.stamp {
		return r.cur, nil
	}
	// Remember the new stamps even when loading fails, so a broken rotation
	// is logged once, not at every handshake, and retried when the files
	// change again.
	r.stamp = st
	cfg, err := load(r.files)
	if err != nil {
		r.log.Error("certificate files changed but do not load; serving with the last good ones", "err", err)
		return r.cur, nil
	}
	r.cur = cfg
	r.log.Info("certificate files reloaded", "cert", r.files.Cert, "not_after", cfg.Certificates[0].Leaf.NotAfter)
	return cfg, nil
}

func load(f Files) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: nextProtos}
	if f.ClientCA != "" {
		pool, err := pool(f.ClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if f.ClientCertOptional {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return cfg, nil
}

func pool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", file)
	}
	return p, nil
}

// Client returns a client configuration: ca verifies the server (system
// roots when ""), cert and key are the client's own certificate (none when
// ""). It is what scalerctl dials with.
func Client(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		p, err := pool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = p
	}
	switch {
	case cert != "" && key != "":
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s and key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	case cert != "" || key != "":
		return nil, errors.New("--cert and --key go together: both or neither")
	}
	return cfg, nil
}
