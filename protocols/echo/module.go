package echo

import (
	_ "embed"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// Sample is the [protocols.echo] table, documented.
//
//go:embed sample.toml
var Sample string

// Config is the [protocols.echo] table; echo has no options.
type Config struct{}

// Validate implements module.Config.
func (Config) Validate(module.Settings) error { return nil }

// New implements module.Config.
func (Config) New(module.Env) (protocols.Protocol, error) { return Protocol{}, nil }

func init() {
	module.Register(module.Module{
		Name: Name, Sample: Sample, // off by default: a diagnostic
		NewConfig: func() module.Config { return &Config{} },
	})
}

var _ module.Config = (*Config)(nil)
