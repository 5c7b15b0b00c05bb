// Package config owns wsgate's TOML configuration: the schema, its
// defaults, strict decoding (an unknown key is an error) and validation.
// Every problem is reported with the file, line and key it concerns.
//
// It imports the modules whose sections it holds, for their config types
// and validation rules (topic templates, spool policies); they never import
// it.
package config
