// Command scalerctl talks to the scaler's activity and admin API: send
// activity, and read or change orgs.
package main

import (
	// Zone data inside the binary: the image has none, and warm schedules
	// name IANA zones.
	_ "time/tzdata"

	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	// CA roots, used when the system has none (the image has none).
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/internal/flagenv"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/tlsconfig"
	"github.com/orgscaler/orgscaler/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// cli holds the global flags and the connection made from them.
type cli struct {
	addr       string
	tokenFile  string
	ca         string
	cert       string
	key        string
	tls        bool
	serverName string
	output     string
	timeout    time.Duration
	out        io.Writer
	now        func() time.Time
	conn       *grpc.ClientConn
}

func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{out: stdout, now: time.Now}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if err != nil {
		fmt.Fprintf(stderr, "scalerctl: %s\n", errorLine(err))
		return 1
	}
	return 0
}

// errorLine keeps a gRPC error to one line: its message and its code.
func errorLine(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", s.Message(), s.Code())
	}
	return err.Error()
}

// envPrefix names each flag's environment variable, as the scaler's do:
// --addr is SCALERCTL_ADDR, --since SCALERCTL_SINCE. A flag on the
// command line wins.
const envPrefix = "SCALERCTL"

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "scalerctl",
		Short: "Send activity to the scaler, and read or change its orgs",
		Long: `scalerctl talks to the scaler's activity and admin API (the scaler's
--api-listen address). Every flag can also be set from its environment
variable: SCALERCTL_ and the flag's name, upper case, dashes as
underscores (SCALERCTL_ADDR, SCALERCTL_TOKEN_FILE).

Examples:
  scalerctl activity acme                 # acme was just used: wake it if dormant
  scalerctl org get acme                  # state, last activity, when it goes dormant
  scalerctl org list --dormant            # every dormant org
  scalerctl org set acme --scale-to-zero=false
  scalerctl org set acme --idle-window 2h # 0 returns to the scaler's default
  scalerctl hint projects/p/subscriptions/jobs 3 --org acme
  scalerctl depth                         # backlog of every tracked subscription`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Apply(cmd.Flags(), envPrefix); err != nil {
				return err
			}
			if c.output != "table" && c.output != "json" {
				return fmt.Errorf("-o is %q: expected table or json", c.output)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", "127.0.0.1:9091", "HOST:PORT of the scaler's API (env SCALERCTL_ADDR)")
	root.PersistentFlags().StringVar(&c.tokenFile, "token-file", "", "file holding the API bearer token (a line of the scaler's --api-tokens-file, or the token alone) (env SCALERCTL_TOKEN_FILE)")
	root.PersistentFlags().StringVar(&c.ca, "ca", "", "PEM CA bundle that verifies the scaler's certificate; implies TLS (env SCALERCTL_CA)")
	root.PersistentFlags().StringVar(&c.cert, "cert", "", "PEM client certificate, for a scaler that checks them; implies TLS (env SCALERCTL_CERT)")
	root.PersistentFlags().StringVar(&c.key, "key", "", "PEM private key of --cert (env SCALERCTL_KEY)")
	root.PersistentFlags().StringVar(&c.serverName, "server-name", "", "the name the scaler's certificate must hold, when --addr is another (a port-forward to localhost: --server-name orgscaler-api.keda.svc) (env SCALERCTL_SERVER_NAME)")
	root.PersistentFlags().BoolVar(&c.tls, "tls", false, "dial over TLS, verifying the scaler with the system's roots unless --ca is given (env SCALERCTL_TLS=true)")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the scaler")
	root.SetVersionTemplate("scalerctl {{.Version}}\n")
	root.AddCommand(c.activityCommand(), c.orgCommand(), c.poolCommand(), c.hintCommand(), c.depthCommand(), c.askCommand(), c.explainCommand(), c.reportCommand(), c.digestCommand(), c.backupCommand(), c.restoreCommand(), c.replayCommand())
	return root
}

func (c *cli) dial() (*grpc.ClientConn, error) {
	if c.conn != nil {
		return c.conn, nil
	}
	opts, err := c.dialOptions(true)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %w", c.addr, err)
	}
	c.conn = conn
	return conn, nil
}

// dialOptions are the transport and credentials the flags ask for. ask
// uses the same transport for the KEDA port, which takes no token.
func (c *cli) dialOptions(token bool) ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	if c.tls || c.ca != "" || c.cert != "" || c.key != "" {
		cfg, err := tlsconfig.Client(c.ca, c.cert, c.key)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = c.serverName
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if token && c.tokenFile != "" {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok := firstToken(string(data))
		if tok == "" {
			return nil, fmt.Errorf("--token-file %s holds no token: expected the token, or a TOKEN ROLE line", c.tokenFile)
		}
		if creds.Info().SecurityProtocol != "tls" && !loopback(c.addr) {
			fmt.Fprintf(os.Stderr, "scalerctl: warning: sending the bearer token to %s in plaintext; use --ca or --tls\n", c.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(tok)))
	}
	return opts, nil
}

// firstToken is the first word of the first line that is not blank or a
// comment.
func firstToken(data string) string {
	for _, line := range strings.Split(data, "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			return f[0]
		}
	}
	return ""
}

// loopback reports whether addr is a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// bearer sends a token with every call. It is allowed over plaintext
// because a scaler may take tokens on a loopback API.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

func (c *cli) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

// api is the scaler's activity and admin services, on one connection.
type api struct {
	admin    pb.AdminServiceClient
	activity pb.ActivityServiceClient
}

// call is every API command's body: dial the scaler, make the command's
// calls within --timeout, and print what they return, as JSON with -o
// json, else with table.
func call[M proto.Message](c *cli, cmd *cobra.Command, do func(context.Context, api) (M, error), table func(M) error) error {
	conn, err := c.dial()
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx(cmd)
	defer cancel()
	m, err := do(ctx, api{admin: pb.NewAdminServiceClient(conn), activity: pb.NewActivityServiceClient(conn)})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.out, m)
	}
	return table(m)
}

func (c *cli) activityCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "activity ORG [ORG...]",
		Short: "Record activity for orgs (wakes a dormant org at once)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			woke := map[string]bool{}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ListOrgsResponse, error) {
				out := &pb.ListOrgsResponse{}
				for _, org := range args {
					resp, err := api.activity.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org})
					if err != nil {
						return nil, err
					}
					out.Orgs = append(out.Orgs, resp.GetOrg())
					woke[org] = resp.GetWoke()
				}
				return out, nil
			}, func(resp *pb.ListOrgsResponse) error {
				for _, o := range resp.GetOrgs() {
					verb := "recorded activity for"
					if woke[o.GetId()] {
						verb = "woke"
					}
					fmt.Fprintf(c.out, "%s %s; dormant %s\n", verb, o.GetId(), dormantText(o, c.now()))
				}
				return nil
			})
		},
	}
}
