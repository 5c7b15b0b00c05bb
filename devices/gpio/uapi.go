package gpio

import "unsafe"

// The GPIO character device uAPI v2 (include/uapi/linux/gpio.h, Linux 5.10
// and later): the structures the ioctls exchange. Every field sits where the
// kernel's __aligned_u64 layout puts it on 32- and 64-bit machines alike
// (the kernel pads explicitly); the assertions at the end of this file check
// that at compile time for the architecture being built, TestUAPILayout the
// ioctl numbers.

const (
	maxNameSize    = 32 // GPIO_MAX_NAME_SIZE
	linesMax       = 64 // GPIO_V2_LINES_MAX
	lineNumAttrMax = 10 // GPIO_V2_LINE_NUM_ATTRS_MAX
)

// enum gpio_v2_line_flag
const (
	flagActiveLow      uint64 = 1 << 1
	flagInput          uint64 = 1 << 2
	flagOutput         uint64 = 1 << 3
	flagEdgeRising     uint64 = 1 << 4
	flagEdgeFalling    uint64 = 1 << 5
	flagBiasPullUp     uint64 = 1 << 8
	flagBiasPullDown   uint64 = 1 << 9
	flagBiasDisabled   uint64 = 1 << 10
	attrOutputValues   uint32 = 2 // GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES
	eventRisingEdge    uint32 = 1 // GPIO_V2_LINE_EVENT_RISING_EDGE
	eventFallingEdge   uint32 = 2 // GPIO_V2_LINE_EVENT_FALLING_EDGE
	lineEventSize             = 48
	ioctlType                 = 0xB4
	ioctlChipInfo             = 0x01 // GPIO_GET_CHIPINFO_IOCTL, _IOR
	ioctlLineInfo             = 0x05 // GPIO_V2_GET_LINEINFO_IOCTL, _IOWR
	ioctlLineRequest          = 0x07 // GPIO_V2_GET_LINE_IOCTL, _IOWR
	ioctlLineGetValues        = 0x0E // GPIO_V2_LINE_GET_VALUES_IOCTL, _IOWR
	ioctlLineSetValues        = 0x0F // GPIO_V2_LINE_SET_VALUES_IOCTL, _IOWR
	iocWrite                  = 1
	iocRead                   = 2
)

// biasFlags maps the bias option to the request flag.
var biasFlags = map[string]uint64{
	BiasAsIs:     0,
	BiasPullUp:   flagBiasPullUp,
	BiasPullDown: flagBiasPullDown,
	BiasDisabled: flagBiasDisabled,
}

// ioc encodes an ioctl request number as asm-generic/ioctl.h does (arm,
// arm64, x86, riscv; not mips, powerpc or sparc).
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | ioctlType<<8 | nr
}

// struct gpiochip_info
type chipInfo struct {
	Name  [maxNameSize]byte
	Label [maxNameSize]byte
	Lines uint32
}

// struct gpio_v2_line_attribute
type lineAttribute struct {
	ID      uint32
	Padding uint32
	Value   uint64 // flags, values or debounce_period_us
}

// struct gpio_v2_line_config_attribute
type lineConfigAttribute struct {
	Attr lineAttribute
	Mask uint64
}

// struct gpio_v2_line_config
type lineConfig struct {
	Flags    uint64
	NumAttrs uint32
	Padding  [5]uint32
	Attrs    [lineNumAttrMax]lineConfigAttribute
}

// struct gpio_v2_line_request
type lineRequest struct {
	Offsets         [linesMax]uint32
	Consumer        [maxNameSize]byte
	Config          lineConfig
	NumLines        uint32
	EventBufferSize uint32
	Padding         [5]uint32
	FD              int32
}

// struct gpio_v2_line_info
type lineInfo struct {
	Name     [maxNameSize]byte
	Consumer [maxNameSize]byte
	Offset   uint32
	NumAttrs uint32
	Flags    uint64
	Attrs    [lineNumAttrMax]lineAttribute
	Padding  [4]uint32
}

// struct gpio_v2_line_values
type lineValues struct {
	Bits uint64
	Mask uint64
}

// requestFlags are the flags of a line request.
func requestFlags(o lineOptions, output bool) uint64 {
	f := biasFlags[o.Bias]
	if o.ActiveLow {
		f |= flagActiveLow
	}
	if output {
		return f | flagOutput
	}
	return f | flagInput | flagEdgeRising | flagEdgeFalling
}

// newLineRequest builds the request of one line.
func newLineRequest(offset int, o lineOptions, output, value bool) *lineRequest {
	r := &lineRequest{NumLines: 1}
	r.Offsets[0] = uint32(offset)
	copy(r.Consumer[:maxNameSize-1], o.Consumer)
	r.Config.Flags = requestFlags(o, output)
	if output {
		r.Config.NumAttrs = 1
		r.Config.Attrs[0] = lineConfigAttribute{Attr: lineAttribute{ID: attrOutputValues, Value: b2u(value)}, Mask: 1}
	}
	return r
}

// cString is a NUL-terminated name of the kernel.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// The layouts must be the kernel's on every architecture: these fail to
// compile where a size or offset differs (an array length must not be
// negative).
var (
	_ [unsafe.Sizeof(chipInfo{}) - 68]byte
	_ [68 - unsafe.Sizeof(chipInfo{})]byte
	_ [unsafe.Sizeof(lineRequest{}) - 592]byte
	_ [592 - unsafe.Sizeof(lineRequest{})]byte
	_ [unsafe.Offsetof(lineRequest{}.Config) - 288]byte
	_ [288 - unsafe.Offsetof(lineRequest{}.Config)]byte
	_ [unsafe.Offsetof(lineRequest{}.FD) - 588]byte
	_ [588 - unsafe.Offsetof(lineRequest{}.FD)]byte
	_ [unsafe.Sizeof(lineInfo{}) - 256]byte
	_ [256 - unsafe.Sizeof(lineInfo{})]byte
	_ [unsafe.Offsetof(lineInfo{}.Flags) - 72]byte
	_ [72 - unsafe.Offsetof(lineInfo{}.Flags)]byte
	_ [unsafe.Sizeof(lineValues{}) - 16]byte
	_ [16 - unsafe.Sizeof(lineValues{})]byte
)
