//go:build !linux

package main

import "io"

func raiseOpenFileLimit(int, io.Writer) {}

func openFileLimit() uint64 { return 0 }

func warnPortRange(*config, io.Writer) {}
