// go-udp-echo: a Go standard-library UDP echo server, used as a comparison
// peer by bench/compare's UDP cases.
//
// The form a competent Go server takes: GOMAXPROCS sockets bound to the same
// address with SO_REUSEPORT (set through net.ListenConfig.Control), each read
// by its own goroutine with ReadFromUDPAddrPort and answered with
// WriteToUDPAddrPort (no allocation per datagram). One socket shared by N
// goroutines, the other common form, serializes them on the socket's read
// lock (internal/poll.FD) and gains nothing past one core; SO_REUSEPORT lets
// the kernel spread flows over the sockets as it does for reuseecho's
// workers. The runtime's netpoller (edge-triggered epoll) parks a goroutine
// whose socket is empty.
//
// Datagrams from source port 0 or the classic loop ports (7 echo, 9 discard,
// 13 daytime, 19 chargen, 37 time) are not answered, as BSD inetd does.
//
// Usage: go-udp-echo [-addr 127.0.0.1:0]
// Prints "go-udp-echo: listening on ADDR:PORT" once every socket is bound.
// SIGTERM/SIGINT: exit 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

const maxDatagram = 65535

// SO_REUSEPORT is missing from the frozen syscall package; 15 is its value on
// Linux x86 and arm (golang.org/x/sys/unix has it, but this peer builds from the
// standard library alone, offline).
const soReusePort = 0xf

func loopPort(p uint16) bool {
	switch p {
	case 0, 7, 9, 13, 19, 37:
		return true
	}
	return false
}

func serve(c *net.UDPConn) {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			// ICMP errors from an earlier send surface here: not fatal.
			continue
		}
		if loopPort(from.Port()) {
			continue
		}
		// A send error (client gone, buffer full) drops this datagram only.
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

func reusePort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address host:port (port 0 picks a free port)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: go-udp-echo [-addr HOST:PORT]\n"+
				"UDP echo server (GOMAXPROCS SO_REUSEPORT sockets, a goroutine each);\n"+
				"prints \"go-udp-echo: listening on HOST:PORT\" when ready.\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	lc := net.ListenConfig{Control: reusePort}
	n := runtime.GOMAXPROCS(0)
	conns := make([]*net.UDPConn, 0, n)
	bind := *addr
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", bind)
		if err != nil {
			fmt.Fprintf(os.Stderr, "go-udp-echo: listen %s: %v\n", bind, err)
			os.Exit(1)
		}
		c := pc.(*net.UDPConn)
		conns = append(conns, c)
		if i == 0 {
			// Port 0: every later socket binds the port the first one got.
			bind = netip.MustParseAddrPort(c.LocalAddr().String()).String()
		}
	}
	for _, c := range conns {
		go serve(c)
	}
	fmt.Printf("go-udp-echo: listening on %s\n", conns[0].LocalAddr().String())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	os.Exit(0)
}
