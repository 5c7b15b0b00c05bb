package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	// describeRE is `git describe --tags`' form for a commit after a tag:
	// TAG-N-gHASH.
	describeRE = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]{4,40})$`)
	// hashRE is `git describe --always` without a tag: an abbreviated
	// commit hash.
	hashRE = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	// debianRE is a Debian upstream version without a revision (no
	// hyphen), as dpkg accepts it.
	debianRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// debianVersion maps the version wsgate is built with (make's VERSION, the
// output of `git describe --tags --always --dirty`) to a Debian version that
// sorts the same way, so that apt upgrades to later builds:
//
//	v1.2.0                   1.2.0
//	v1.2.0-rc1               1.2.0~rc1           (before 1.2.0)
//	v1.2.0-3-g92aa0b7        1.2.0+3.g92aa0b7    (after 1.2.0, before 1.2.1)
//	92aa0b7 (no tag yet)     0~145.g92aa0b7      (commits = 145; before any release)
//	any of them + -dirty     ... +dirty, or .dirty after a +
//
// commits is the number of commits in the history (git rev-list --count
// HEAD); it orders builds that have no tag, and 0 means unknown.
func debianVersion(describe string, commits int) (string, error) {
	v, dirty := strings.CutSuffix(describe, "-dirty")
	var out string
	switch m := describeRE.FindStringSubmatch(v); {
	case hashRE.MatchString(v):
		if commits > 0 {
			out = "0~" + strconv.Itoa(commits) + ".g" + v
		} else {
			out = "0~g" + v
		}
	case m != nil:
		out = release(m[1]) + "+" + m[2] + ".g" + m[3]
	default:
		out = release(v)
	}
	if dirty {
		if strings.Contains(out, "+") {
			out += ".dirty"
		} else {
			out += "+dirty"
		}
	}
	if !debianRE.MatchString(out) {
		return "", fmt.Errorf("version %q makes %q, which is no Debian version: tag releases vX.Y.Z, or give one with VERSION=", describe, out)
	}
	return out, nil
}

// release maps a tag to a Debian version: without the leading "v", and with
// a semantic version's pre-release sorting before the release ("~").
func release(tag string) string {
	v := strings.TrimPrefix(tag, "v")
	if core, pre, ok := strings.Cut(v, "-"); ok {
		v = core + "~" + strings.ReplaceAll(pre, "-", ".")
	}
	return v
}
