package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgscaler/orgscaler/internal/proctest"
)

// The API port answers HTTP/JSON (the Connect protocol) beside gRPC, on
// the real binary: the README's curl as written, the same roles and errors
// with their HTTP statuses, and the Python producer example, standard
// library only, sending through it.
func TestHTTPJSON(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("producer-token-0123 producer\nadministrator-token-0123 admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, scalerBin, filepath.Join(dir, "data"), nil, "--api-tokens-file", tokens)
	base := "http://" + p.API

	// The README's call, as written there.
	out, err := exec.Command("curl", "-sS", "-H", "Authorization: Bearer producer-token-0123", "-H", "Content-Type: application/json",
		"-d", `{"org":"acme"}`, base+"/orgscaler.v1.ActivityService/RecordActivity").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	var rec struct {
		Org struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"org"`
		Woke bool `json:"woke"`
	}
	if err := json.Unmarshal(out, &rec); err != nil || rec.Org.ID != "acme" || rec.Org.State != "STATE_ACTIVE" || !rec.Woke {
		t.Fatalf("RecordActivity over HTTP/JSON: %s (%v)", out, err)
	}

	for _, c := range []struct {
		token, path, body string
		status            int
		code              string
	}{
		{"", "ActivityService/RecordActivity", `{"org":"acme"}`, 401, "unauthenticated"},
		{"wrong", "ActivityService/RecordActivity", `{"org":"acme"}`, 401, "unauthenticated"},
		{"producer-token-0123", "AdminService/GetOrg", `{"org":"acme"}`, 403, "permission_denied"},
		{"producer-token-0123", "ActivityService/RecordActivity", `{"org":"not an org"}`, 400, "invalid_argument"},
		{"administrator-token-0123", "AdminService/GetOrg", `{"org":"nobody"}`, 404, "not_found"},
		{"administrator-token-0123", "AdminService/GetOrg", `{"org":"acme"}`, 200, ""},
		{"administrator-token-0123", "AdminService/UpdateOrg", `{"org":"acme","warmSchedule":"Mon 25:00-26:00 UTC"}`, 400, "invalid_argument"},
	} {
		req, _ := http.NewRequest(http.MethodPost, base+"/orgscaler.v1."+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Code, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.status || e.Code != c.code {
			t.Errorf("%s with token %q: HTTP %d %q (%s); want %d %q", c.path, c.token, resp.StatusCode, e.Code, e.Message, c.status, c.code)
		}
	}

	// The Python example: 50 interactions each of three orgs, rate-limited
	// in the process to one call per org.
	// Then a hint, and an admin turning scale to zero off for py-a, as a
	// Django post_save handler would.
	py := exec.Command("python3", "demo.py", base, "producer-token-0123", "50", "py-a", "py-b", "py-c")
	py.Dir = "../examples/python"
	py.Env = append(os.Environ(), "ORGSCALER_ADMIN_TOKEN=administrator-token-0123")
	out, err = py.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 demo.py: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != `{"flushed": true, "sent": 3, "failed": 0, "dropped": 0, "scaleToZeroAllowed": false}` {
		t.Fatalf("python3 demo.py: %s; want 3 calls sent, none failed, scale to zero off", got)
	}
	for _, org := range []string{"py-a", "py-b", "py-c"} {
		req, _ := http.NewRequest(http.MethodPost, base+"/orgscaler.v1.AdminService/GetOrg", strings.NewReader(fmt.Sprintf(`{"org":%q}`, org)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer administrator-token-0123")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("org %s after the Python producer: %v %v", org, resp, err)
		}
		resp.Body.Close()
	}
	// And gRPC on the same port, as scalerctl speaks it.
	tok := filepath.Join(dir, "admin")
	if err := os.WriteFile(tok, []byte("administrator-token-0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(scalerctl, "--addr", p.API, "--token-file", tok, "org", "get", "py-a").CombinedOutput(); err != nil || !strings.Contains(string(out), "py-a") {
		t.Fatalf("scalerctl over gRPC on the same port: %v\n%s", err, out)
	}
}
