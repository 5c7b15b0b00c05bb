// Package exec is the "exec" local driver: a program on the hub as a
// device, in one of two modes.
//
// In mode "oneshot" each downlink command runs the program once. Its
// arguments are templates ({name}, {id}, {device}, {args}, {args.FIELD})
// that each expand within one argument: the program is started directly,
// never through a shell, so no command can inject another. The result
// carries the exit status and the (bounded) output; a timeout kills the
// program with its process group.
//
// In mode "daemon" one program runs for good: its stdout lines are
// frames, its stdin takes commands (one JSON line each) and routed frames,
// its stderr lines are logged. It is restarted with backoff when it exits
// and stopped with SIGTERM, then SIGKILL, when the device's context ends.
//
// On Linux every program runs in a process group of its own, which is
// signalled only while the program is not yet reaped (so that a recycled
// group id is never hit), and whatever the program leaves running in it is
// killed when it exits. Elsewhere only the program itself is signalled.
//
// The package depends on the devices contract only (and x/sys on Linux).
package exec
