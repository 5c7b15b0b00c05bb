//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64)

package gpio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// charDev is a GPIO chip opened through its character device.
type charDev struct {
	f     *os.File
	path  string
	name  string
	lines int
}

// openChip opens the GPIO chip at path.
func openChip(path string) (chip, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("GPIO chip %s does not exist (%s): %w", path, chipsHere(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("GPIO chip: %w", err)
	}
	var info chipInfo
	if err := ioctl(f, ioc(iocRead, ioctlChipInfo, unsafe.Sizeof(info)), unsafe.Pointer(&info)); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%s is not a GPIO chip: %w", path, err)
		}
		return nil, fmt.Errorf("GPIO chip %s: chip info: %w", path, err)
	}
	return &charDev{f: f, path: path, name: cString(info.Name[:]), lines: int(info.Lines)}, nil
}

// chipsHere lists the GPIO chips of this machine for an error message.
func chipsHere() string {
	chips, _ := filepath.Glob("/dev/gpiochip*")
	if len(chips) == 0 {
		return "this machine has no GPIO chips"
	}
	return "chips here: " + strings.Join(chips, ", ")
}

func (c *charDev) Name() string { return c.name }
func (c *charDev) Lines() int   { return c.lines }
func (c *charDev) Close() error { return c.f.Close() }

func (c *charDev) info(offset int) (*lineInfo, error) {
	info := &lineInfo{Offset: uint32(offset)}
	if err := ioctl(c.f, ioc(iocRead|iocWrite, ioctlLineInfo, unsafe.Sizeof(*info)), unsafe.Pointer(info)); err != nil {
		return nil, fmt.Errorf("%s line %d: line info: %w", c.name, offset, err)
	}
	return info, nil
}

func (c *charDev) LineByName(name string) (int, error) {
	for offset := range c.lines {
		info, err := c.info(offset)
		if err != nil {
			return 0, err
		}
		if cString(info.Name[:]) == name {
			return offset, nil
		}
	}
	return 0, fmt.Errorf("%s has no line named %q (gpioinfo %s lists them)", c.name, name, c.name)
}

// request requests one line and returns its file, non-blocking so that
// reads go through the runtime's poller and Close interrupts them.
func (c *charDev) request(offset int, o lineOptions, output, value bool) (*os.File, error) {
	req := newLineRequest(offset, o, output, value)
	err := ioctl(c.f, ioc(iocRead|iocWrite, ioctlLineRequest, unsafe.Sizeof(*req)), unsafe.Pointer(req))
	if errors.Is(err, unix.EBUSY) {
		user := "another program"
		if info, ierr := c.info(offset); ierr == nil && cString(info.Consumer[:]) != "" {
			user = fmt.Sprintf("%q", cString(info.Consumer[:]))
		}
		return nil, fmt.Errorf("%s line %d is busy: used by %s: %w", c.name, offset, user, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s line %d: request: %w", c.name, offset, err)
	}
	if err := unix.SetNonblock(int(req.FD), true); err != nil {
		unix.Close(int(req.FD))
		return nil, fmt.Errorf("%s line %d: %w", c.name, offset, err)
	}
	return os.NewFile(uintptr(req.FD), fmt.Sprintf("%s line %d", c.name, offset)), nil
}

func (c *charDev) RequestInput(offset int, o lineOptions) (inputLine, error) {
	f, err := c.request(offset, o, false, false)
	if err != nil {
		return nil, err
	}
	return &charLine{f: f, buf: make([]byte, 16*lineEventSize)}, nil
}

func (c *charDev) RequestOutput(offset int, o lineOptions, value bool) (outputLine, error) {
	f, err := c.request(offset, o, true, value)
	if err != nil {
		return nil, err
	}
	return &charLine{f: f}, nil
}

// charLine is a requested line.
type charLine struct {
	f   *os.File
	buf []byte // for ReadEdges, which runs on one goroutine
}

func (l *charLine) Value() (bool, error) {
	v := lineValues{Mask: 1}
	if err := ioctl(l.f, ioc(iocRead|iocWrite, ioctlLineGetValues, unsafe.Sizeof(v)), unsafe.Pointer(&v)); err != nil {
		return false, fmt.Errorf("read line value: %w", err)
	}
	return v.Bits&1 == 1, nil
}

func (l *charLine) SetValue(value bool) error {
	v := lineValues{Bits: b2u(value), Mask: 1}
	if err := ioctl(l.f, ioc(iocRead|iocWrite, ioctlLineSetValues, unsafe.Sizeof(v)), unsafe.Pointer(&v)); err != nil {
		return fmt.Errorf("set line value: %w", err)
	}
	return nil
}

// ReadEdges reads struct gpio_v2_line_event records. Their timestamps are
// CLOCK_MONOTONIC; they are turned into wall clock time by the distance
// from now on that clock.
func (l *charLine) ReadEdges(buf []edge) (int, error) {
	want := min(len(buf), len(l.buf)/lineEventSize) * lineEventSize
	n, err := l.f.Read(l.buf[:want])
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	count := 0
	for b := l.buf[:n]; len(b) >= lineEventSize; b = b[lineEventSize:] {
		ts := binary.NativeEndian.Uint64(b[0:8])
		id := binary.NativeEndian.Uint32(b[8:12])
		if id != eventRisingEdge && id != eventFallingEdge {
			continue
		}
		at := now
		if ago := time.Duration(mono.Nano() - int64(ts)); ago > 0 && ago < time.Minute {
			at = now.Add(-ago)
		}
		buf[count] = edge{Rising: id == eventRisingEdge, Time: at}
		count++
	}
	return count, nil
}

func (l *charLine) Close() error { return l.f.Close() }

// ioctl runs one ioctl on f's descriptor, safely against a concurrent Close.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
