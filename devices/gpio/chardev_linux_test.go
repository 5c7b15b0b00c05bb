//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64)

package gpio

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"unsafe"
)

// The real character device against a chip that does not exist: the
// error says so, and which chips there are.
func TestOpenMissingChip(t *testing.T) {
	t.Parallel()
	c := NewConfig()
	c.Chip, c.Line = "gpiochip99", 17
	_, err := c.Open("button", nil)
	if err == nil {
		t.Fatal("opened /dev/gpiochip99")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "gpio: GPIO chip /dev/gpiochip99 does not exist (") {
		t.Fatalf("error %q", err)
	}
	t.Log(err)
}

// A file that is not a GPIO chip fails at the first ioctl.
func TestOpenNotAChip(t *testing.T) {
	t.Parallel()
	_, err := openChip("/dev/null")
	if err == nil || err.Error() != "/dev/null is not a GPIO chip: inappropriate ioctl for device" {
		t.Fatalf("error %v", err)
	}
}

// The structures match the kernel's, and so do the ioctl numbers
// (include/uapi/linux/gpio.h as the C compiler lays it out).
func TestUAPILayout(t *testing.T) {
	t.Parallel()
	sizes := []struct {
		name      string
		got, want uintptr
	}{
		{"gpiochip_info", unsafe.Sizeof(chipInfo{}), 68},
		{"gpio_v2_line_attribute", unsafe.Sizeof(lineAttribute{}), 16},
		{"gpio_v2_line_config_attribute", unsafe.Sizeof(lineConfigAttribute{}), 24},
		{"gpio_v2_line_config", unsafe.Sizeof(lineConfig{}), 272},
		{"gpio_v2_line_request", unsafe.Sizeof(lineRequest{}), 592},
		{"gpio_v2_line_info", unsafe.Sizeof(lineInfo{}), 256},
		{"gpio_v2_line_values", unsafe.Sizeof(lineValues{}), 16},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("struct %s: %d bytes, want %d", s.name, s.got, s.want)
		}
	}
	if off := unsafe.Offsetof(lineRequest{}.FD); off != 588 {
		t.Errorf("gpio_v2_line_request.fd at %d, want 588", off)
	}
	if off := unsafe.Offsetof(lineRequest{}.Config); off != 288 {
		t.Errorf("gpio_v2_line_request.config at %d, want 288", off)
	}
	ioctls := []struct {
		name      string
		got, want uintptr
	}{
		{"GPIO_GET_CHIPINFO_IOCTL", ioc(iocRead, ioctlChipInfo, unsafe.Sizeof(chipInfo{})), 0x8044b401},
		{"GPIO_V2_GET_LINEINFO_IOCTL", ioc(iocRead|iocWrite, ioctlLineInfo, unsafe.Sizeof(lineInfo{})), 0xc100b405},
		{"GPIO_V2_GET_LINE_IOCTL", ioc(iocRead|iocWrite, ioctlLineRequest, unsafe.Sizeof(lineRequest{})), 0xc250b407},
		{"GPIO_V2_LINE_GET_VALUES_IOCTL", ioc(iocRead|iocWrite, ioctlLineGetValues, unsafe.Sizeof(lineValues{})), 0xc010b40e},
		{"GPIO_V2_LINE_SET_VALUES_IOCTL", ioc(iocRead|iocWrite, ioctlLineSetValues, unsafe.Sizeof(lineValues{})), 0xc010b40f},
	}
	for _, i := range ioctls {
		if i.got != i.want {
			t.Errorf("%s = %#x, want %#x", i.name, i.got, i.want)
		}
	}
}

func TestLineRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		opts          lineOptions
		output, value bool
		wantFlags     uint64
		wantAttrs     uint32
		wantValue     uint64
	}{
		{name: "input", opts: lineOptions{Bias: BiasAsIs}, wantFlags: flagInput | flagEdgeRising | flagEdgeFalling},
		{name: "button", opts: lineOptions{Bias: BiasPullUp, ActiveLow: true}, wantFlags: flagInput | flagEdgeRising | flagEdgeFalling | flagBiasPullUp | flagActiveLow},
		{name: "pull-down", opts: lineOptions{Bias: BiasPullDown}, wantFlags: flagInput | flagEdgeRising | flagEdgeFalling | flagBiasPullDown},
		{name: "output off", opts: lineOptions{Bias: BiasAsIs}, output: true, wantFlags: flagOutput, wantAttrs: 1},
		{name: "relay on, active low", opts: lineOptions{Bias: BiasDisabled, ActiveLow: true}, output: true, value: true,
			wantFlags: flagOutput | flagActiveLow | flagBiasDisabled, wantAttrs: 1, wantValue: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Consumer = "wsgate:a-very-long-device-identifier"
			r := newLineRequest(27, tt.opts, tt.output, tt.value)
			if r.NumLines != 1 || r.Offsets[0] != 27 || r.Config.Flags != tt.wantFlags || r.Config.NumAttrs != tt.wantAttrs {
				t.Fatalf("request %d lines, offset %d, flags %#x, %d attrs", r.NumLines, r.Offsets[0], r.Config.Flags, r.Config.NumAttrs)
			}
			if tt.wantAttrs == 1 {
				a := r.Config.Attrs[0]
				if a.Attr.ID != attrOutputValues || a.Mask != 1 || a.Attr.Value != tt.wantValue {
					t.Fatalf("output values attribute %+v", a)
				}
			}
			if got := cString(r.Consumer[:]); got != "wsgate:a-very-long-device-ident" || r.Consumer[maxNameSize-1] != 0 {
				t.Fatalf("consumer %q: must be NUL-terminated within 32 bytes", got)
			}
		})
	}
}
