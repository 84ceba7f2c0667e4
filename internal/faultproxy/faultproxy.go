// Package faultproxy is a small in-process TCP proxy for fault tests: it
// forwards loopback connections to a target and can reset them, stall them
// (blackhole: bytes are held, nothing is answered, new connections are
// accepted but stay silent) or delay them (latency per forwarded chunk).
//
// It is test infrastructure: every goroutine stops on Close, and Close
// resets every connection.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*pair]struct{}
	paused  bool
	resume  chan struct{} // closed when a blackhole ends
	latency time.Duration
	closed  bool

	accepted atomic.Int64
	wg       sync.WaitGroup
}

type pair struct{ client, server net.Conn }

// New listens on a free loopback port and forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[*pair]struct{}), resume: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections the proxy has accepted so far (a
// measure of reconnect rate).
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Reset closes every current connection abruptly (RST on the client side).
func (p *Proxy) Reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[*pair]struct{})
	p.mu.Unlock()
	for c := range conns {
		resetConn(c.client)
		_ = c.server.Close()
	}
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Blackhole stalls all traffic (current and new connections) until
// Blackhole(false): bytes are held, not delivered. Ending a blackhole
// resets the connections that were open during it, as a real network
// partition usually ends with broken connections: their clients are reset
// first, so no reply reaches them, and only then are the held requests
// released to the server (a command may run whose reply is lost); each
// connection's server side closes once its held bytes are written.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	if on == p.paused {
		p.mu.Unlock()
		return
	}
	p.paused = on
	if on {
		p.resume = make(chan struct{})
		p.mu.Unlock()
		return
	}
	conns := p.conns
	p.conns = make(map[*pair]struct{})
	for c := range conns {
		resetConn(c.client)
	}
	close(p.resume)
	p.mu.Unlock()
}

// SetLatency delays every forwarded chunk, in both directions, by d.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Close stops accepting, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.paused {
		p.paused = false
		close(p.resume)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			resetConn(c)
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			resetConn(c)
			_ = s.Close()
			return
		}
		p.conns[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, c, s)
		go p.pipe(pr, s, c)
	}
}

func (p *Proxy) pipe(pr *pair, from, to net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pr)
		p.mu.Unlock()
		_ = pr.client.Close()
		_ = pr.server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume, lat := p.resume, p.latency
			p.mu.Unlock()
			<-resume // held while blackholed
			if lat > 0 {
				time.Sleep(lat)
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a reset: close both sides
		}
	}
}
