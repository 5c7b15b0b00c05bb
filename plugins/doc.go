// Package plugins runs out-of-process protocol plugins with HashiCorp
// go-plugin: it launches each configured binary after checking its SHA-256,
// registers the protocols the plugin describes into the registry, runs one
// gRPC stream per device session through it, and supervises it: a plugin
// that crashes, exits or stalls has its sessions closed with 1011 and is
// restarted with backoff, and one that keeps failing is disabled.
//
// The contract is plugins/proto; plugin authors use plugins/sdk. This
// package depends on the protocols contract only, never on the gateway.
package plugins
