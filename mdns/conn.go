package mdns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The mDNS groups (RFC 6762 3).
var (
	group4 = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: mdnsPort}
	group6 = &net.UDPAddr{IP: net.ParseIP("ff02::fb"), Port: mdnsPort}
)

// Options selects where mDNS runs. The zero value uses every interface that
// is up, not loopback and has the MULTICAST flag, over IPv4 and IPv6.
type Options struct {
	// Interfaces limits mDNS to these interface names. A loopback
	// interface may be named: Linux delivers multicast on lo although it
	// lacks the MULTICAST flag, so mDNS then stays on the machine.
	Interfaces []string
	// DisableIPv6 keeps mDNS off ff02::fb.
	DisableIPv6 bool
	// Logger receives debug messages about dropped packets and send
	// failures; nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// conn is one mDNS socket, for one address family, bound to port 5353 and
// joined to the group on a set of interfaces.
type conn struct {
	v6   bool
	udp  *net.UDPConn
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
	ifis []net.Interface // interfaces the group was joined on

	mu sync.Mutex // the interface choice and the write must not interleave
}

// selectInterfaces returns the interfaces named, or by default every one
// that is up, not loopback and multicast-capable.
func selectInterfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		ifis := make([]net.Interface, 0, len(names))
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("%w: interface %q: %w", ErrNoMulticast, n, err)
			}
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&(net.FlagMulticast|net.FlagLoopback) == 0 {
				return nil, fmt.Errorf("%w: interface %q is down or has no MULTICAST flag", ErrNoMulticast, n)
			}
			ifis = append(ifis, *ifi)
		}
		return ifis, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("%w: list interfaces: %w", ErrNoMulticast, err)
	}
	var ifis []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
			ifis = append(ifis, ifi)
		}
	}
	if len(ifis) == 0 {
		return nil, fmt.Errorf("%w: no interface is up with the MULTICAST flag", ErrNoMulticast)
	}
	return ifis, nil
}

// openConns opens the IPv4 and (unless disabled) IPv6 sockets. One family
// failing is fine; both failing is ErrNoMulticast.
func openConns(opts Options) ([]*conn, error) {
	ifis, err := selectInterfaces(opts.Interfaces)
	if err != nil {
		return nil, err
	}
	var conns []*conn
	var errs []error
	for _, v6 := range []bool{false, true} {
		if v6 && opts.DisableIPv6 {
			continue
		}
		c, err := listen(v6, ifis)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrNoMulticast, errors.Join(errs...))
	}
	return conns, nil
}

// hasFamily reports whether ifi has an address of the family, which joining
// the group on it needs.
func hasFamily(ifi net.Interface, v6 bool) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && (p.IP.To4() == nil) == v6 {
			return true
		}
	}
	return false
}

// listen binds port 5353 and joins the group on every interface of ifis
// that has an address of the family. net.ListenMulticastUDP sets
// SO_REUSEADDR, so avahi, other responders and our own browser can share
// the port.
func listen(v6 bool, ifis []net.Interface) (*conn, error) {
	network, group, fam := "udp4", group4, "IPv4"
	if v6 {
		network, group, fam = "udp6", group6, "IPv6"
	}
	var candidates []net.Interface
	for _, ifi := range ifis {
		if hasFamily(ifi, v6) {
			candidates = append(candidates, ifi)
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%s: no interface with an %s address", fam, fam)
	}
	var udp *net.UDPConn
	var errs []error
	var joined []net.Interface
	for i, ifi := range candidates {
		c, err := net.ListenMulticastUDP(network, &ifi, group)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s on %s: %w", fam, ifi.Name, err))
			continue
		}
		udp, joined, candidates = c, []net.Interface{ifi}, candidates[i+1:]
		break
	}
	if udp == nil {
		return nil, errors.Join(errs...)
	}
	c := &conn{v6: v6, udp: udp}
	// ListenMulticastUDP turns multicast loopback off; it must be on for a
	// browser and a responder on the same host (ship-go next to wsgate, or
	// the tests) to hear each other. TTL 255 is RFC 6762 11.
	var err error
	if v6 {
		c.p6 = ipv6.NewPacketConn(udp)
		for _, ifi := range candidates {
			if c.p6.JoinGroup(&ifi, group) == nil {
				joined = append(joined, ifi)
			}
		}
		err = errors.Join(c.p6.SetMulticastLoopback(true), c.p6.SetMulticastHopLimit(255),
			c.p6.SetHopLimit(255), c.p6.SetControlMessage(ipv6.FlagInterface, true))
	} else {
		c.p4 = ipv4.NewPacketConn(udp)
		for _, ifi := range candidates {
			if c.p4.JoinGroup(&ifi, group) == nil {
				joined = append(joined, ifi)
			}
		}
		err = errors.Join(c.p4.SetMulticastLoopback(true), c.p4.SetMulticastTTL(255),
			c.p4.SetTTL(255), c.p4.SetControlMessage(ipv4.FlagInterface, true))
	}
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("%s socket options: %w", fam, err)
	}
	c.ifis = joined
	return c, nil
}

func (c *conn) close() { _ = c.udp.Close() }

// iface returns the joined interface with the index, or nil.
func (c *conn) iface(index int) *net.Interface {
	for i := range c.ifis {
		if c.ifis[i].Index == index {
			return &c.ifis[i]
		}
	}
	return nil
}

// read returns the next packet and the index of the interface it came in
// on (0 when the platform does not say).
func (c *conn) read(buf []byte) (n, ifindex int, src *net.UDPAddr, err error) {
	var from net.Addr
	if c.v6 {
		var cm *ipv6.ControlMessage
		n, cm, from, err = c.p6.ReadFrom(buf)
		if cm != nil {
			ifindex = cm.IfIndex
		}
	} else {
		var cm *ipv4.ControlMessage
		n, cm, from, err = c.p4.ReadFrom(buf)
		if cm != nil {
			ifindex = cm.IfIndex
		}
	}
	src, _ = from.(*net.UDPAddr)
	if err == nil && src == nil {
		err = fmt.Errorf("mdns: packet from %v", from)
	}
	return n, ifindex, src, err
}

// sendGroup multicasts b out of one interface.
func (c *conn) sendGroup(b []byte, ifi *net.Interface) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v6 {
		if err := c.p6.SetMulticastInterface(ifi); err != nil {
			return err
		}
		_, err := c.p6.WriteTo(b, nil, group6)
		return err
	}
	if err := c.p4.SetMulticastInterface(ifi); err != nil {
		return err
	}
	_, err := c.p4.WriteTo(b, nil, group4)
	return err
}

// sendTo sends b to one address (unicast replies).
func (c *conn) sendTo(b []byte, dst *net.UDPAddr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.udp.WriteToUDP(b, dst)
	return err
}

// sendAll packs m and multicasts it on every interface of every conn.
func sendAll(conns []*conn, m *dns.Msg, log *slog.Logger) {
	b, err := m.Pack()
	if err != nil {
		log.Debug("mdns: pack", "err", err)
		return
	}
	for _, c := range conns {
		for i := range c.ifis {
			if err := c.sendGroup(b, &c.ifis[i]); err != nil {
				log.Debug("mdns: send", "interface", c.ifis[i].Name, "err", err)
			}
		}
	}
}

// readLoop hands every DNS message read from c to handle until c is
// closed. Packets from interfaces we did not join (Linux delivers those
// when another socket joined there) and undecodable ones are dropped.
func readLoop(c *conn, log *slog.Logger, handle func(m *dns.Msg, src *net.UDPAddr, ifi *net.Interface)) {
	buf := make([]byte, maxPacket)
	for {
		n, ifindex, src, err := c.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Debug("mdns: read", "err", err)
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		}
		var ifi *net.Interface
		if ifindex != 0 {
			if ifi = c.iface(ifindex); ifi == nil {
				continue
			}
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			log.Debug("mdns: unpack", "from", src, "err", err)
			continue
		}
		handle(m, src, ifi)
	}
}

// link is where a message goes out: the addresses worth announcing there,
// and whether it is a loopback interface.
type link struct {
	addrs    []netip.Addr
	loopback bool
}

// linkOf describes ifi, or all of ifis together when ifi is nil (a packet
// whose interface the platform did not say).
func linkOf(ifi *net.Interface, ifis []net.Interface) link {
	list := ifis
	if ifi != nil {
		list = []net.Interface{*ifi}
	}
	l := link{addrs: interfaceAddrs(list)}
	for _, i := range list {
		if i.Flags&net.FlagLoopback != 0 {
			l.loopback = true
		}
	}
	return l
}

// interfaceAddrs returns the addresses worth announcing on the interfaces:
// IPv4 and IPv6 except IPv6 link-local (browsers such as SHIP's drop
// them), and loopback addresses only on a loopback interface.
func interfaceAddrs(list []net.Interface) []netip.Addr {
	var out []netip.Addr
	for _, i := range list {
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(p.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if usable(ip) && (!ip.IsLoopback() || i.Flags&net.FlagLoopback != 0) && !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

// usable is the address filter of both sides: no IPv6 link-local (it would
// need a zone, and SHIP's ship-go drops it), nothing that cannot be
// dialled.
func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !(a.Is6() && a.IsLinkLocalUnicast())
}
