// go-echo: a Go standard-library TCP echo server, one goroutine per
// connection, used as a comparison peer by bench/compare.
//
// It is deliberately the idiomatic form: net.Listen + Accept loop +
// a goroutine per connection copying with a fixed buffer. The Go runtime's
// netpoller (edge-triggered epoll) does the multiplexing; GOMAXPROCS (by
// default: the CPUs in the affinity mask) decides how many OS threads run
// Go code at once.
//
// Usage: go-echo [-addr 127.0.0.1:0]
// Prints "go-echo: listening on ADDR:PORT" once the listener is ready.
// SIGTERM/SIGINT: close the listener and exit.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const bufSize = 64 * 1024

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, rerr := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return // peer reset or went away
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				// Half-close from the client: everything read has been
				// written back, so finish our side cleanly.
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address host:port (port 0 picks a free port)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: go-echo [-addr HOST:PORT]\n"+
				"TCP echo server (goroutine per connection); prints\n"+
				"\"go-echo: listening on HOST:PORT\" when ready.\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-echo: listen %s: %v\n", *addr, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		ln.Close()
	}()

	fmt.Printf("go-echo: listening on %s\n", ln.Addr().String())

	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				os.Exit(0)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: report, back off briefly (as net/http
			// does) instead of spinning, and keep serving.
			fmt.Fprintf(os.Stderr, "go-echo: accept: %v\n", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
