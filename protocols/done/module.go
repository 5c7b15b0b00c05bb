package done

import (
	_ "embed"

	"github.com/wsgate/wsgate/protocols/module"
)

// Sample is the [protocols.done] table with its defaults, documented.
//
//go:embed sample.toml
var Sample string

func init() {
	module.Register(module.Module{
		Name: Name, DefaultOrder: 20, Sample: Sample,
		NewConfig: func() module.Config { c := DefaultConfig(); return &c },
	})
}

var _ module.Config = (*Config)(nil)
