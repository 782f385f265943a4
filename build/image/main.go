// Command image builds the scaler's container image without a container
// engine and without pulling a base image: the static scaler and
// scalerctl (CA roots and zone data compiled in) in one layer, run as
// the non-root user 65532, for each platform asked, written as an OCI
// image layout (index.json, blobs/) that crane, skopeo or a registry push
// take as it is. `make image` runs it.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	var o options
	var platforms string
	flag.StringVar(&o.out, "out", "bin/image", "directory the OCI image layout is written to (replaced)")
	flag.StringVar(&o.version, "version", "devel", "the version the binaries and the image's labels carry")
	flag.StringVar(&o.revision, "revision", "", "the VCS revision the binaries and the image's labels carry")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "the platforms to build, OS/ARCH[,OS/ARCH...]")
	flag.Parse()
	for _, p := range strings.Split(platforms, ",") {
		pl, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil || pl.OS != "linux" || pl.Architecture == "" {
			fmt.Fprintf(os.Stderr, "image: -platforms entry %q: expected linux/ARCH\n", p)
			os.Exit(2)
		}
		o.platforms = append(o.platforms, *pl)
	}
	if err := build(o); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %s, %d platform(s)\n", o.out, o.version, len(o.platforms))
}

type options struct {
	out, version, revision string
	platforms              []v1.Platform
	// created stamps the image and its files; zero: the Unix epoch, so
	// the same sources give the same digest.
	created time.Time
}

// binaries are what the image holds, from the module's root.
var binaries = []string{"scaler", "scalerctl"}

// build writes the image index of o.platforms to o.out.
func build(o options) error {
	if o.created.IsZero() {
		o.created = time.Unix(0, 0).UTC()
	}
	work, err := os.MkdirTemp("", "orgscaler-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		img, err := platformImage(o, p, filepath.Join(work, p.Architecture))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	_, err = layout.Write(o.out, idx)
	return err
}

// platformImage builds the binaries for p into dir and makes their image.
func platformImage(o options, p v1.Platform, dir string) (v1.Image, error) {
	files := map[string]string{}
	for _, b := range binaries {
		bin := filepath.Join(dir, b)
		if err := goBuild(o, p, bin, "./cmd/"+b); err != nil {
			return nil, err
		}
		files["usr/local/bin/"+b] = bin
	}
	layer, err := rootfs(files, o.created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Created = v1.Time{Time: o.created}
	cfg.Config = v1.Config{
		Entrypoint:   []string{"/usr/local/bin/scaler"},
		User:         "65532:65532",
		WorkingDir:   "/",
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		ExposedPorts: map[string]struct{}{"9090/tcp": {}, "9091/tcp": {}, "9092/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "orgscaler",
			"org.opencontainers.image.source":   "https://github.com/orgscaler/orgscaler",
			"org.opencontainers.image.version":  o.version,
			"org.opencontainers.image.revision": o.revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cfg)
}

// goBuild builds pkg for p, static, stamped with the version.
func goBuild(o options, p v1.Platform, out, pkg string) error {
	ldflags := fmt.Sprintf("-s -w -X github.com/orgscaler/orgscaler/version.Version=%s -X github.com/orgscaler/orgscaler/version.Revision=%s", o.version, o.revision)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Variant != "" && p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// rootfs is the image's one layer: the directories, a passwd naming the
// non-root user, /tmp, and the files (path in the image → file here).
func rootfs(files map[string]string, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	errs := []error{dir("etc", 0o755), dir("tmp", 0o1777), dir("usr", 0o755), dir("usr/local", 0o755), dir("usr/local/bin", 0o755),
		dir("home", 0o755), dir("home/nonroot", 0o700),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")),
		file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n"))}
	for _, name := range []string{"usr/local/bin/scaler", "usr/local/bin/scalerctl"} {
		data, err := os.ReadFile(files[name])
		if err != nil {
			return nil, err
		}
		errs = append(errs, file(name, 0o755, data))
	}
	if err := errors.Join(append(errs, tw.Close())...); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}
