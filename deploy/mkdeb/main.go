// Command mkdeb packs wsgate into Debian packages, one per architecture,
// as deploy/nfpm.yaml describes them: the binary, the configuration, the
// systemd unit and the maintainer scripts of deploy/. `make deb` runs it
// on the binaries of `make cross`:
//
//	go run ./deploy/mkdeb -version "$(git describe --tags --always --dirty)" \
//		-commits "$(git rev-list --count HEAD)" -out dist \
//		amd64=dist/wsgate-linux-amd64 arm64=dist/wsgate-linux-arm64 armhf=dist/wsgate-linux-armv6
//
// It prints the file name of each package it wrote in -out. nfpm runs in
// this process: packaging reads local files only and needs no network.
// File times come from SOURCE_DATE_EPOCH when it is set, so that the same
// commit makes the same packages.
package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	flags.SetOutput(stderr)
	spec := flags.String("spec", filepath.Join("deploy", "nfpm.yaml"), "the package description (nfpm YAML)")
	describe := flags.String("version", "", "wsgate's version: `git describe --tags --always --dirty`, or a release such as v1.2.0")
	commits := flags.Int("commits", 0, "commits in the history (`git rev-list --count HEAD`): orders the versions of builds without a tag")
	out := flags.String("out", "dist", "the directory the packages are written to")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: mkdeb -version VERSION [-commits N] [-spec FILE] [-out DIR] ARCH=BINARY...")
		fmt.Fprintln(stderr, "  ARCH is a Debian architecture (amd64, arm64, armhf), BINARY the wsgate binary built for it.")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *describe == "" || flags.NArg() == 0 {
		flags.Usage()
		return 2
	}
	version, err := debianVersion(*describe, *commits)
	if err != nil {
		fmt.Fprintln(stderr, "mkdeb:", err)
		return 1
	}
	for _, arg := range flags.Args() {
		arch, binary, ok := strings.Cut(arg, "=")
		if !ok || arch == "" || binary == "" {
			fmt.Fprintf(stderr, "mkdeb: %q: want ARCH=BINARY\n", arg)
			return 2
		}
		name, err := build(*spec, arch, version, binary, *out)
		if err != nil {
			fmt.Fprintf(stderr, "mkdeb: %s: %v\n", arch, err)
			return 1
		}
		fmt.Fprintln(stdout, name)
	}
	return 0
}

// machines are the ELF machines of the Debian architectures wsgate is
// packaged for.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
	"armhf": elf.EM_ARM,
}

// build writes the package of binary for arch into dir, and returns its
// file name.
func build(spec, arch, version, binary, dir string) (string, error) {
	if err := checkBinary(binary, arch); err != nil {
		return "", err
	}
	binary, err := filepath.Abs(binary)
	if err != nil {
		return "", err
	}
	info, err := packageInfo(spec, map[string]string{"ARCH": arch, "VERSION": version, "BINARY": binary})
	if err != nil {
		return "", err
	}
	name := deb.Default.ConventionalFileName(info)
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("package: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, os.Rename(f.Name(), filepath.Join(dir, name))
}

// packageInfo reads the package description at spec with vars for its
// ${NAME}s, and prepares it for the deb packager. Relative paths in it are
// relative to spec's directory.
func packageInfo(spec string, vars map[string]string) (*nfpm.Info, error) {
	var unknown []string
	cfg, err := nfpm.ParseFileWithEnvMapping(spec, func(name string) string {
		v, ok := vars[name]
		// nfpm asks for NFPM_*PASSPHRASE to sign; these packages are not
		// signed (apt installs a local file without a signature).
		if !ok && !strings.HasPrefix(name, "NFPM_") && !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
		return v
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%s: unknown variables %s", spec, strings.Join(unknown, ", "))
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	base := filepath.Dir(spec)
	relative := func(path *string) {
		if *path != "" && !filepath.IsAbs(*path) {
			*path = filepath.Join(base, *path)
		}
	}
	for _, c := range info.Contents {
		relative(&c.Source)
	}
	s := &info.Scripts
	for _, path := range []*string{&s.PreInstall, &s.PostInstall, &s.PreRemove, &s.PostRemove} {
		relative(path)
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return info, nil
}

// checkBinary makes sure that binary runs on arch: an executable for its
// machine, statically linked, since the package depends on no C library.
func checkBinary(binary, arch string) error {
	want, ok := machines[arch]
	if !ok {
		return fmt.Errorf("no wsgate package for architecture %q (amd64, arm64 or armhf)", arch)
	}
	f, err := elf.Open(binary)
	if err != nil {
		return fmt.Errorf("binary: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s is built for %s, not for %s", binary, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is linked dynamically; build it with CGO_ENABLED=0 (make cross)", binary)
		}
	}
	return nil
}
