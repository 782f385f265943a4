package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image as a user gets it: an OCI layout whose index names the
// platform, an image that runs as 65532 with the scaler as entrypoint,
// and a root filesystem whose scaler (static, so it runs on any Linux)
// says its version. Built for this machine's architecture only (make
// image builds amd64 and arm64); the same sources give the same digest.
func TestImageRunsFromItsRootFilesystem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	out := filepath.Join(t.TempDir(), "image")
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	o := options{out: out, version: "v9.9.9-test", revision: "0123abc", platforms: []v1.Platform{p}}
	if err := os.Chdir("../.."); err != nil { // the module's root, as make image runs it
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir("build/image") })
	if err := build(o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.json", "oci-layout", "blobs/sha256"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatalf("the layout lacks %s: %v", f, err)
		}
	}
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != runtime.GOARCH {
		t.Fatalf("index: %+v, %v; want one manifest for linux/%s", im, err, runtime.GOARCH)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Fatalf("index media type %s; want OCI's", mt)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/usr/local/bin/scaler" ||
		cfg.Config.Labels["org.opencontainers.image.version"] != "v9.9.9-test" {
		t.Fatalf("config: %+v; want user 65532, the scaler as entrypoint, the version label", cfg.Config)
	}
	root := t.TempDir()
	extract(t, img, root)
	for _, bin := range binaries {
		b, err := exec.Command(filepath.Join(root, "usr/local/bin", bin), "--version").Output()
		if err != nil || !strings.HasPrefix(string(b), bin+" v9.9.9-test (revision 0123abc,") {
			t.Fatalf("%s --version from the image's root filesystem: %q, %v", bin, b, err)
		}
	}
	first, _ := img.Digest()
	if err := build(o); err != nil {
		t.Fatal(err)
	}
	again, _ := layout.ImageIndexFromPath(out)
	im2, _ := again.IndexManifest()
	if im2.Manifests[0].Digest != first {
		t.Fatalf("built twice from the same sources: %s then %s; want the same digest", first, im2.Manifests[0].Digest)
	}
}

// extract unpacks img's filesystem into dir.
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
