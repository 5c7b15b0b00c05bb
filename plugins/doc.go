// Package plugins runs out-of-process protocol plugins with HashiCorp
// go-plugin: it launches each configured binary after checking its SHA-256,
// registers the protocols the plugin describes into the registry, runs the
// device sessions through it on one link (link.go), and supervises it: a plugin
// that crashes, exits, hangs or stalls has its sessions closed with 1011
// and is killed and restarted with backoff. A fault is blamed on the device
// whose event the plugin was handling, and a device blamed repeatedly is
// refused for a while (faults.go); a plugin that keeps failing by itself is
// disabled.
//
// The contract is plugins/proto; plugin authors use plugins/sdk. This
// package depends on the protocols contract only, never on the gateway.
package plugins
