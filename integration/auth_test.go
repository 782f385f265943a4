package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/certtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

const (
	producerToken = "producer-token-0123456789"
	adminToken    = "admin-token-0123456789abc"
)

// securedAPI starts a daemon whose API takes bearer tokens and client
// certificates over TLS, and returns how to dial it.
func securedAPI(t *testing.T) (*daemon, *certtest.CA, string) {
	s := newTLSSetup(t)
	tokens := filepath.Join(s.dir, "tokens")
	certtest.WriteFile(t, tokens, []byte(fmt.Sprintf("# who may call\n%s producer\n\n%s admin\n", producerToken, adminToken)))
	o := options(t, t.TempDir())
	o.APITLS, o.APITokensFile, o.TokensReload = s.files, tokens, 20*time.Millisecond
	o.PubSub, o.PubSubListen = app.PubSubEmbedded, "127.0.0.1:0"
	api := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool(), MinVersion: tls.VersionTLS12}))
	d := startWith(t, o, nil, []grpc.DialOption{api})
	return d, s.ca, tokens
}

// calls is every RPC of the API port, each made once with ctx.
func calls(conn *grpc.ClientConn) map[string]func(ctx context.Context) error {
	act, adm := pb.NewActivityServiceClient(conn), pb.NewAdminServiceClient(conn)
	sub := "projects/demo/subscriptions/jobs"
	return map[string]func(context.Context) error{
		"RecordActivity": func(ctx context.Context) error {
			_, err := act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"})
			return err
		},
		"StreamActivity": func(ctx context.Context) error {
			s, err := act.StreamActivity(ctx)
			if err != nil {
				return err
			}
			_ = s.Send(&pb.StreamActivityRequest{Org: "acme"})
			_, err = s.CloseAndRecv()
			return err
		},
		"Hint": func(ctx context.Context) error {
			_, err := act.Hint(ctx, &pb.HintRequest{Subscription: sub, Messages: 1})
			return err
		},
		"ImportOrgs": func(ctx context.Context) error {
			s, err := adm.ImportOrgs(ctx)
			if err != nil {
				return err
			}
			_, err = s.CloseAndRecv() // no rows: nothing imported
			return err
		},
		"Restore": func(ctx context.Context) error {
			s, err := adm.Restore(ctx)
			if err != nil {
				return err
			}
			_, err = s.CloseAndRecv() // no chunk: nothing restored
			return err
		},
		"GetOrg": func(ctx context.Context) error {
			_, err := adm.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
			return err
		},
		"ListOrgs": func(ctx context.Context) error {
			_, err := adm.ListOrgs(ctx, &pb.ListOrgsRequest{})
			return err
		},
		"UpdateOrg": func(ctx context.Context) error {
			on := true
			_, err := adm.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", ScaleToZeroAllowed: &on})
			return err
		},
		"ListBacklogs": func(ctx context.Context) error {
			_, err := adm.ListBacklogs(ctx, &pb.ListBacklogsRequest{})
			return err
		},
		"Explain": func(ctx context.Context) error {
			_, err := adm.Explain(ctx, &pb.ExplainRequest{Metadata: map[string]string{"workload": "pynode", "org": "acme"}})
			return err
		},
		"Report": func(ctx context.Context) error {
			_, err := adm.Report(ctx, &pb.ReportRequest{})
			return err
		},
		"Health": func(ctx context.Context) error {
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
		"Reflection": func(ctx context.Context) error {
			s, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			// A refused stream's Send may see only EOF; Recv has the status.
			_ = s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			_, err = s.Recv()
			return err
		},
	}
}

func TestAPIRolesAgainstEveryRPC(t *testing.T) {
	d, ca, _ := securedAPI(t)
	producerRPCs := map[string]bool{"RecordActivity": true, "StreamActivity": true, "Hint": true, "Reflection": true}
	certConn := func(org ...string) *grpc.ClientConn {
		leaf := ca.Issue(t, certtest.Spec{CommonName: "client", Organization: org, Client: true}).TLS(t)
		return d.dial(t, d.app.APIAddr(), grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12})))
	}
	tokenConn := d.dial(t, d.app.APIAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})))
	withToken := func(header string) func(context.Context) context.Context {
		return func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "authorization", header)
		}
	}
	none := func(ctx context.Context) context.Context { return ctx }
	// want gives the code a caller gets from an RPC: codes.OK stands for
	// "let in" (the call may still fail for its own reasons).
	for _, c := range []struct {
		who  string
		conn *grpc.ClientConn
		ctx  func(context.Context) context.Context
		want func(rpc string) codes.Code
	}{
		{"no credentials", tokenConn, none, func(string) codes.Code { return codes.Unauthenticated }},
		{"unknown token", tokenConn, withToken("Bearer not-a-token-anyone-has"), func(string) codes.Code { return codes.Unauthenticated }},
		{"malformed header", tokenConn, withToken(adminToken), func(string) codes.Code { return codes.Unauthenticated }},
		{"producer token", tokenConn, withToken("Bearer " + producerToken), func(rpc string) codes.Code {
			if producerRPCs[rpc] {
				return codes.OK
			}
			return codes.PermissionDenied
		}},
		{"admin token", tokenConn, withToken("bearer " + adminToken), func(string) codes.Code { return codes.OK }},
		{"certificate O=producer", certConn("producer"), none, func(rpc string) codes.Code {
			if producerRPCs[rpc] {
				return codes.OK
			}
			return codes.PermissionDenied
		}},
		{"certificate O=admin", certConn("admin"), none, func(string) codes.Code { return codes.OK }},
		{"certificate with no role", certConn("acme-corp"), none, func(string) codes.Code { return codes.PermissionDenied }},
	} {
		for rpc, call := range calls(c.conn) {
			want := c.want(rpc)
			if rpc == "Health" {
				want = codes.OK // probes carry no credentials
			}
			ctx, cancel := context.WithTimeout(c.ctx(context.Background()), 5*time.Second)
			err := call(ctx)
			cancel()
			got := status.Code(err)
			switch {
			case want == codes.OK && (got == codes.Unauthenticated || got == codes.PermissionDenied):
				t.Errorf("%s calling %s: want let in, got %v", c.who, rpc, err)
			case want != codes.OK && got != want:
				t.Errorf("%s calling %s: want %s, got %v", c.who, rpc, want, err)
			}
		}
	}
}

func TestScalerctlWithTokenOverTLS(t *testing.T) {
	d, ca, tokens := securedAPI(t)
	dir := t.TempDir()
	caFile, producer, admin := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "producer"), filepath.Join(dir, "admin")
	certtest.WriteFile(t, caFile, ca.PEM)
	certtest.WriteFile(t, producer, []byte(producerToken+"\n"))
	certtest.WriteFile(t, admin, []byte(adminToken+" admin\n"))

	// --server-name checks the certificate for another name than --addr's
	// (a port-forward to localhost of the in-cluster API).
	if _, err := d.ctl(t, "--ca", caFile, "--server-name", "orgscaler-api.keda.svc", "--token-file", producer, "activity", "acme"); err == nil || !strings.Contains(err.Error(), "orgscaler-api.keda.svc") {
		t.Fatalf("--server-name naming what the certificate lacks: %v; want a certificate error naming it", err)
	}
	if _, err := d.ctl(t, "--ca", caFile, "--server-name", "localhost", "--token-file", producer, "activity", "acme"); err != nil {
		t.Fatalf("--server-name localhost, which the certificate holds: %v", err)
	}
	if _, err := d.ctl(t, "--ca", caFile, "--token-file", producer, "activity", "acme"); err != nil {
		t.Fatalf("producer sending activity: %v", err)
	}
	_, err := d.ctl(t, "--ca", caFile, "--token-file", producer, "org", "get", "acme")
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "needs admin") {
		t.Fatalf("producer reading an org: want a one-line PermissionDenied naming the role needed, got %v", err)
	}
	if out, err := d.ctl(t, "--ca", caFile, "--token-file", admin, "org", "get", "acme"); err != nil || !strings.Contains(out, "acme") {
		t.Fatalf("admin reading an org: %q, %v", out, err)
	}
	_, err = d.ctl(t, "--ca", caFile, "org", "get", "acme")
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("no token: want Unauthenticated saying how to send one, got %v", err)
	}

	// The tokens file is re-read: a revoked token stops working, and a
	// malformed file keeps the last good tokens.
	certtest.WriteFile(t, tokens, []byte(adminToken+" admin\n"))
	poll(t, "producer token revoked", func() bool {
		_, err := d.ctl(t, "--ca", caFile, "--token-file", producer, "activity", "acme")
		return err != nil && strings.Contains(err.Error(), "Unauthenticated")
	})
	certtest.WriteFile(t, tokens, []byte(producerToken+" superuser\n"))
	poll(t, "failed reload counted", func() bool {
		return strings.Contains(scrape(t, d), `orgscaler_api_tokens_reloads_total{result="error"} 1`)
	})
	for range 2 {
		if _, err := d.ctl(t, "--ca", caFile, "--token-file", admin, "org", "get", "acme"); err != nil {
			t.Fatalf("a malformed tokens file must keep the last good tokens: %v", err)
		}
	}
	// Emptied: every token is revoked.
	certtest.WriteFile(t, tokens, []byte("# revoked after a leak\n"))
	poll(t, "every token revoked", func() bool {
		_, err := d.ctl(t, "--ca", caFile, "--token-file", admin, "org", "get", "acme")
		return err != nil && strings.Contains(err.Error(), "Unauthenticated")
	})
}

// With client certificates as the only way in, a probe without one still
// gets health, and every other call without one is Unauthenticated.
func TestAPIClientCertsOnly(t *testing.T) {
	s := newTLSSetup(t)
	o := options(t, t.TempDir())
	o.APITLS = s.files
	api := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool(), MinVersion: tls.VersionTLS12}))
	d := startWith(t, o, nil, []grpc.DialOption{api})
	conn := d.dial(t, d.app.APIAddr(), api)
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health without a client certificate: %v", err)
	}
	if _, err := d.orgs.ListOrgs(context.Background(), &pb.ListOrgsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ListOrgs without a client certificate: want Unauthenticated, got %v", err)
	}
}

func TestTokensFileErrorsStopTheStart(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content, want string
	}{
		{"unknown role", producerToken + " root\n", `line 1: unknown role "root": expected producer or admin`},
		{"one field", "\n" + producerToken + "\n", "line 2 has 1 fields: expected TOKEN ROLE"},
		{"short token", "abc admin\n", "line 1: the token is 3 characters: expected at least 16"},
		{"repeated token", producerToken + " admin\n" + producerToken + " producer\n", "line 2 repeats the token of line 1"},
		{"empty", "# nothing\n", "no tokens in it"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		certtest.WriteFile(t, file, []byte(c.content))
		o := options(t, t.TempDir())
		o.APITokensFile = file
		a, err := app.New(o)
		if err == nil {
			_ = a.Close()
			t.Errorf("%s: want an error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: error %q should name the file and say %q", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), producerToken) {
			t.Errorf("%s: the error shows the token: %q", c.name, err)
		}
	}
	unreadable := filepath.Join(dir, "unreadable")
	certtest.WriteFile(t, unreadable, []byte(adminToken+" admin\n"))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 { // root reads anything
		o := options(t, t.TempDir())
		o.APITokensFile = unreadable
		if _, err := app.New(o); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable tokens file: want permission denied, got %v", err)
		}
	}
}

func TestAPIRefusesToListenOpenlyWithoutAuth(t *testing.T) {
	o := options(t, t.TempDir())
	o.APIListen = "0.0.0.0:0"
	_, err := app.New(o)
	if err == nil || !strings.Contains(err.Error(), "--api-insecure") || !strings.Contains(err.Error(), "--api-tokens-file") {
		t.Fatalf("want a refusal naming the ways out, got %v", err)
	}
	o.APIInsecure = true
	a, err := app.New(o)
	if err != nil {
		t.Fatalf("--api-insecure: %v", err)
	}
	_ = a.Close()
}

// A message larger than the limit is refused before it is read, with a
// message that says so.
func TestOversizedMessagesAreRefused(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	big := strings.Repeat("x", app.MaxMessageSize)
	_, err := d.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: big})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "larger than max") {
		t.Fatalf("API: want ResourceExhausted, got %v", err)
	}
	ref := pynode("acme")
	ref.ScalerMetadata["padding"] = big
	_, err = d.keda.IsActive(context.Background(), ref)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("KEDA port: want ResourceExhausted, got %v", err)
	}
	if active, _ := answer(t, d, pynode("acme")); !active {
		t.Fatal("the scaler should go on answering after refusing a message")
	}
}
