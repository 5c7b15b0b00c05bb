package gpio

import "time"

// chip is a GPIO chip: the driver's boundary with the hardware. The real
// one is the character device (chardev_linux.go); the tests use a fake.
type chip interface {
	// Name is the kernel's name of the chip, "gpiochip0".
	Name() string
	// Lines is the number of lines of the chip.
	Lines() int
	// LineByName returns the offset of the line with that name.
	LineByName(name string) (int, error)
	// RequestInput requests the line as an input reporting both edges.
	RequestInput(offset int, o lineOptions) (inputLine, error)
	// RequestOutput requests the line as an output driving value from the
	// start (no glitch through the other level).
	RequestOutput(offset int, o lineOptions, value bool) (outputLine, error)
	// Close releases the chip; requested lines stay valid until closed.
	Close() error
}

// lineOptions are the settings of a line request.
type lineOptions struct {
	Consumer  string // the label the kernel shows for the line
	ActiveLow bool   // values (and edges) are logical: low is 1
	Bias      string // BiasAsIs, BiasPullUp, BiasPullDown or BiasDisabled
}

// edge is one edge the kernel reported, in logical terms (active_low
// applied): Rising is 0 to 1.
type edge struct {
	Rising bool
	Time   time.Time
}

// inputLine is a requested input line.
type inputLine interface {
	// Value reads the logical level.
	Value() (bool, error)
	// ReadEdges blocks until the kernel reports edges and stores them in
	// buf, oldest first. After Close it fails.
	ReadEdges(buf []edge) (int, error)
	// Close releases the line; safe to call during ReadEdges.
	Close() error
}

// outputLine is a requested output line.
type outputLine interface {
	// Value reads the logical level the line drives.
	Value() (bool, error)
	// SetValue drives the logical level.
	SetValue(bool) error
	// Close releases the line, which keeps its level.
	Close() error
}
