// Package config owns wsgate's TOML configuration: the schema, its
// defaults, strict decoding (an unknown key is an error) and validation.
// Every problem is reported with the file, line and key it concerns.
//
// It may import the config types of built-in modules (protocols, drivers)
// but never the gateway or the MQTT bridge.
package config
