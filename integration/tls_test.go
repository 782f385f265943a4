package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/certtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/tlsconfig"
)

// kedaTLS is the client KEDA builds from a trigger with enableTLS and a
// TriggerAuthentication giving caCert, tlsClientCert and tlsClientKey: the
// CA as RootCAs, the pair as the client certificate, and gRPC's TLS
// credentials over them (keda pkg/util.NewTLSConfig, external_scaler.go).
func kedaTLS(ca *x509.CertPool, client *tls.Certificate) grpc.DialOption {
	cfg := &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

type tlsSetup struct {
	dir      string
	ca       *certtest.CA
	files    tlsconfig.Files
	client   tls.Certificate
	clientCA string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	s := &tlsSetup{dir: t.TempDir(), ca: certtest.NewCA(t, "orgscaler test CA")}
	cert, key := s.ca.Issue(t, certtest.Spec{CommonName: "orgscaler"}).Write(t, s.dir, "server")
	s.clientCA = filepath.Join(s.dir, "client-ca.pem")
	certtest.WriteFile(t, s.clientCA, s.ca.PEM)
	s.files = tlsconfig.Files{Cert: cert, Key: key, ClientCA: s.clientCA}
	s.client = s.ca.Issue(t, certtest.Spec{CommonName: "keda-operator", Client: true}).TLS(t)
	return s
}

// isActiveErr calls IsActive on a fresh connection dialled with opts.
func isActiveErr(t *testing.T, addr string, opts ...grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = kedapb.NewExternalScalerClient(conn).IsActive(ctx, pynode("acme"))
	return err
}

// serverSerial is the serial of the certificate the KEDA port shows a new
// connection.
func serverSerial(t *testing.T, addr string, opt grpc.DialOption) string {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var p peer.Peer
	if _, err := kedapb.NewExternalScalerClient(conn).IsActive(context.Background(), pynode("acme"), grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
}

func TestKEDAPortMTLS(t *testing.T) {
	s := newTLSSetup(t)
	o := options(t, t.TempDir())
	o.TLS = s.files
	keda := kedaTLS(s.ca.Pool(), &s.client)
	d := startWith(t, o, []grpc.DialOption{keda}, nil)
	addr := d.app.Addr()
	if err := isActiveErr(t, addr, keda); err != nil {
		t.Fatalf("KEDA's client with a valid certificate: %v", err)
	}

	other := certtest.NewCA(t, "another CA")
	expired := s.ca.Issue(t, certtest.Spec{CommonName: "old", Client: true, NotAfter: time.Now().Add(-time.Minute)}).TLS(t)
	foreign := other.Issue(t, certtest.Spec{CommonName: "stranger", Client: true}).TLS(t)
	for _, c := range []struct {
		name string
		opt  grpc.DialOption
	}{
		{"no client certificate", kedaTLS(s.ca.Pool(), nil)},
		{"an expired client certificate", kedaTLS(s.ca.Pool(), &expired)},
		{"a client certificate from another CA", kedaTLS(s.ca.Pool(), &foreign)},
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"a server CA that does not match", kedaTLS(other.Pool(), &s.client)},
	} {
		err := isActiveErr(t, addr, c.opt)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: want the handshake refused (Unavailable), got %v", c.name, err)
		}
	}

	// A dormant org's push stream stays open across a rotation of the
	// server's certificate, and new connections see the new certificate.
	if _, err := d.orgs.UpdateOrg(context.Background(), &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "acme dormant", func() bool {
		r, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "acme"})
		return err == nil && r.GetOrg().GetState() == pb.Org_STATE_DORMANT
	})
	stream, err := d.keda.StreamIsActive(context.Background(), pynode("acme"))
	if err != nil {
		t.Fatal(err)
	}
	before := serverSerial(t, addr, keda)
	next := s.ca.Issue(t, certtest.Spec{CommonName: "orgscaler"})
	next.Write(t, s.dir, "server")
	if after := serverSerial(t, addr, keda); after == before || after != next.Cert.SerialNumber.String() {
		t.Fatalf("rotated certificate not served: serial before %s, after %s, want %s", before, after, next.Cert.SerialNumber)
	}
	if _, err := d.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil || !r.GetResult() {
		t.Fatalf("stream opened before the rotation: want a push of true, got %v, %v", r, err)
	}

	// A new client CA: the old client certificate is refused from the next
	// handshake, and one from the new CA is let in.
	certtest.WriteFile(t, s.clientCA, other.PEM)
	if err := isActiveErr(t, addr, keda); status.Code(err) != codes.Unavailable {
		t.Fatalf("client certificate of the replaced CA: want refused, got %v", err)
	}
	if err := isActiveErr(t, addr, kedaTLS(s.ca.Pool(), &foreign)); err != nil {
		t.Fatalf("client certificate of the new CA: %v", err)
	}

	// A broken rotation keeps the last good files.
	certtest.WriteFile(t, s.files.Cert, []byte("not a certificate"))
	if err := isActiveErr(t, addr, kedaTLS(s.ca.Pool(), &foreign)); err != nil {
		t.Fatalf("after a broken rotation the last good certificate should serve: %v", err)
	}
}

func TestTLSBadFilesStopTheStart(t *testing.T) {
	s := newTLSSetup(t)
	otherKey := filepath.Join(s.dir, "other.key")
	certtest.WriteFile(t, otherKey, s.ca.Issue(t, certtest.Spec{}).KeyPEM)
	garbage := filepath.Join(s.dir, "garbage.pem")
	certtest.WriteFile(t, garbage, []byte("hello"))
	for _, c := range []struct {
		name string
		set  func(*app.Options)
		want string
	}{
		{"key of another certificate", func(o *app.Options) { o.TLS = tlsconfig.Files{Cert: s.files.Cert, Key: otherKey} }, "private key does not match"},
		{"missing certificate", func(o *app.Options) {
			o.TLS = tlsconfig.Files{Cert: filepath.Join(s.dir, "nope.crt"), Key: s.files.Key}
		}, "nope.crt"},
		{"client CA that is not PEM", func(o *app.Options) { o.TLS = tlsconfig.Files{Cert: s.files.Cert, Key: s.files.Key, ClientCA: garbage} }, "no PEM certificate"},
		{"key without certificate", func(o *app.Options) { o.TLS = tlsconfig.Files{Key: s.files.Key} }, "--tls-cert and --tls-key go together"},
		{"client CA without certificate", func(o *app.Options) { o.APITLS = tlsconfig.Files{ClientCA: s.clientCA} }, "--api-tls-client-ca needs --api-tls-cert"},
	} {
		o := options(t, t.TempDir())
		c.set(&o)
		a, err := app.New(o)
		if err == nil {
			_ = a.Close()
			t.Errorf("%s: want an error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q should say %q", c.name, err, c.want)
		}
	}
}
