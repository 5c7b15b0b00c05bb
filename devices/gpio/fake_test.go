package gpio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// fakeChip stands in for the hardware: the only mock of these tests.
type fakeChip struct {
	name  string
	names []string // line names by offset; its length is the line count

	mu         sync.Mutex
	levels     map[int]bool // levels of the lines before they are requested
	requestErr error
	inputs     map[int]*fakeInput
	outputs    map[int]*fakeOutput
	open, shut int // chip opens and closes
}

func newFakeChip() *fakeChip {
	return &fakeChip{
		name:    "gpiochip0",
		names:   []string{"ID_SDA", "ID_SCL", "GPIO2", "GPIO3", "GPIO4", 17: "GPIO17", 27: "GPIO27"},
		levels:  map[int]bool{},
		inputs:  map[int]*fakeInput{},
		outputs: map[int]*fakeOutput{},
	}
}

// opener is the Config.open of the chip.
func (c *fakeChip) opener(path string) (chip, error) {
	if path != "/dev/gpiochip0" {
		return nil, fmt.Errorf("GPIO chip %s does not exist: %w", path, os.ErrNotExist)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open++
	return c, nil
}

func (c *fakeChip) Name() string { return c.name }
func (c *fakeChip) Lines() int   { return len(c.names) }

func (c *fakeChip) LineByName(name string) (int, error) {
	for i, n := range c.names {
		if n == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s has no line named %q", c.name, name)
}

func (c *fakeChip) RequestInput(offset int, o lineOptions) (inputLine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requestErr != nil {
		return nil, c.requestErr
	}
	l := &fakeInput{opts: o, level: c.levels[offset], edges: make(chan []edge), closed: make(chan struct{})}
	c.inputs[offset] = l
	return l, nil
}

func (c *fakeChip) RequestOutput(offset int, o lineOptions, value bool) (outputLine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requestErr != nil {
		return nil, c.requestErr
	}
	l := &fakeOutput{opts: o, levels: []bool{value}}
	c.outputs[offset] = l
	return l, nil
}

func (c *fakeChip) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut++
	return nil
}

// input waits for the input line at offset to be requested.
func (c *fakeChip) input(t *testing.T, offset int) *fakeInput {
	t.Helper()
	var l *fakeInput
	waitFor(t, "the input line requested", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		l = c.inputs[offset]
		return l != nil
	})
	return l
}

// output waits for the output line at offset to be requested.
func (c *fakeChip) output(t *testing.T, offset int) *fakeOutput {
	t.Helper()
	var l *fakeOutput
	waitFor(t, "the output line requested", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		l = c.outputs[offset]
		return l != nil
	})
	return l
}

// fakeInput is a requested input line whose level the test drives.
type fakeInput struct {
	opts   lineOptions
	edges  chan []edge
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	level    bool
	reads    int // Value calls: one at start, then one as each change settles
	valueErr error
	readErr  error // ReadEdges fails with it once set and woken
}

func (l *fakeInput) Value() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	return l.level, l.valueErr
}

// settled waits until the driver has read the line n times.
func (l *fakeInput) settled(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "the line read", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.reads >= n
	})
}

func (l *fakeInput) ReadEdges(buf []edge) (int, error) {
	select {
	case b, ok := <-l.edges:
		if !ok {
			l.mu.Lock()
			defer l.mu.Unlock()
			return 0, l.readErr
		}
		return copy(buf, b), nil
	case <-l.closed:
		return 0, os.ErrClosed
	}
}

func (l *fakeInput) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeInput) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// burst changes the level along rising (true) and falling (false) edges
// 1ms apart from start, and hands the kernel's batch of edges to the
// driver. The level ends as the last edge leaves it.
func (l *fakeInput) burst(t *testing.T, start time.Time, edges ...bool) {
	t.Helper()
	b := make([]edge, len(edges))
	for i, rising := range edges {
		b[i] = edge{Rising: rising, Time: start.Add(time.Duration(i) * time.Millisecond)}
	}
	l.mu.Lock()
	l.level = edges[len(edges)-1]
	l.mu.Unlock()
	select {
	case l.edges <- b:
	case <-time.After(deadline):
		t.Fatal("the driver does not read edges")
	}
}

// fail makes ReadEdges fail with err.
func (l *fakeInput) fail(err error) {
	l.mu.Lock()
	l.readErr = err
	l.mu.Unlock()
	close(l.edges)
}

// fakeOutput is a requested output line that records its levels.
type fakeOutput struct {
	opts lineOptions

	mu     sync.Mutex
	levels []bool // the initial one, then each SetValue
	setErr error
	closed bool
}

func (l *fakeOutput) Value() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.levels[len(l.levels)-1], nil
}

func (l *fakeOutput) SetValue(v bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("set on a released line")
	}
	if l.setErr != nil {
		return l.setErr
	}
	l.levels = append(l.levels, v)
	return nil
}

func (l *fakeOutput) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

func (l *fakeOutput) history() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.levels...)
}

func (l *fakeOutput) level() bool {
	v, _ := l.Value()
	return v
}

func (l *fakeOutput) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}
