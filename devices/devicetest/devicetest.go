// Package devicetest holds the checks every local driver's tests share:
// decoding its sample the way the config package does, and reading the
// problems its Validate reports.
package devicetest

import (
	"errors"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// Entry is one [[devices]] entry of a sample.
type Entry[C devices.Config] struct {
	ID     string
	Config C
}

// Sample decodes every [[devices]] entry of sample strictly, as the config
// package does: the table once into its id and driver, once into a fresh
// Config from newConfig, with no key left over. It checks that each entry
// names driver, has a valid id and validates.
func Sample[C devices.Config](t *testing.T, sample, driver string, newConfig func() C) []Entry[C] {
	t.Helper()
	var file struct {
		Devices []toml.Primitive `toml:"devices"`
	}
	md, err := toml.Decode(sample, &file)
	if err != nil {
		t.Fatal(err)
	}
	if len(file.Devices) == 0 {
		t.Fatal("the sample has no [[devices]]")
	}
	var entries []Entry[C]
	for i, table := range file.Devices {
		var head struct {
			ID     string `toml:"id"`
			Driver string `toml:"driver"`
		}
		if err := md.PrimitiveDecode(table, &head); err != nil {
			t.Fatalf("devices[%d]: %v", i, err)
		}
		if head.Driver != driver || !protocols.ValidDeviceID(head.ID) {
			t.Errorf("devices[%d]: id %q driver %q", i, head.ID, head.Driver)
		}
		c := newConfig()
		if err := md.PrimitiveDecode(table, c); err != nil {
			t.Fatalf("devices[%d]: %v", i, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("devices[%d] %s: %v", i, head.ID, err)
		}
		entries = append(entries, Entry[C]{ID: head.ID, Config: c})
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		t.Errorf("sample keys that are no option: %v", keys)
	}
	return entries
}

// Problems returns the problems c.Validate reports, one string each, and
// checks that each names its key ("key: problem").
func Problems(t *testing.T, c devices.Config) []string {
	t.Helper()
	err := c.Validate()
	if err == nil {
		return nil
	}
	list := []error{err}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		list = joined.Unwrap()
	}
	var problems []string
	for _, e := range list {
		problems = append(problems, e.Error())
		if key, _ := devices.SplitKeyError(e); key == "" {
			t.Errorf("problem %q names no key", e)
		}
	}
	return problems
}
