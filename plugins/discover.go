package plugins

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Discover returns the plugins of dir: every file listed in dir/SHA256SUMS,
// in the format sha256sum writes ("<hex>  <name>" or "<hex> *<name>"), with
// its checksum. Files not listed there are not run.
func Discover(dir string) ([]Spec, error) {
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return nil, fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	defer f.Close()
	var specs []Spec
	lines := bufio.NewScanner(f)
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		name = strings.TrimPrefix(strings.TrimLeft(name, " "), "*")
		if !ok || name == "" || strings.ContainsRune(name, '/') {
			return nil, fmt.Errorf("%s/SHA256SUMS:%d: want \"<sha256>  <file name>\"", dir, n)
		}
		specs = append(specs, Spec{Path: filepath.Join(dir, name), SHA256: sum})
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("read %s/SHA256SUMS: %w", dir, err)
	}
	return specs, nil
}
