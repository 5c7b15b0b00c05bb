package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A secret (a password, a token) may be written in the file, kept in a
// file of its own (a *_file key: the configuration can then be shared or
// versioned without it), or given in an environment variable (systemd's
// credentials, a container's secrets). The environment wins, then the
// file, then the value in the configuration.

// secret resolves one secret; key names the value's key for problems.
func secret(value, file, env, key string) (string, []fault) {
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", []fault{{path: key + "_file", msg: fmt.Sprintf("set %s or %s_file, not both", lastKey(key), lastKey(key))}}
	}
	v, err := readSecretFile(file)
	if err != nil {
		return "", []fault{{path: key + "_file", msg: err.Error()}}
	}
	var fs []fault
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o004 != 0 {
		fs = append(fs, fault{path: key + "_file", warn: true,
			msg: fmt.Sprintf("%s is readable by every user of this machine; chmod o-r it", file)})
	}
	return v, fs
}

// readSecretFile returns the first line of path, without surrounding
// white space (an editor's trailing newline is not part of a password).
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("cannot read %q: %v", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", fmt.Errorf("cannot read %q: %v", path, err)
		}
		return "", fmt.Errorf("%q is empty", path)
	}
	v := strings.TrimSpace(sc.Text())
	if v == "" {
		return "", fmt.Errorf("the first line of %q is empty", path)
	}
	return v, nil
}

func lastKey(key string) string {
	return key[strings.LastIndexByte(key, '.')+1:]
}
