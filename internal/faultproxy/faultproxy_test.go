package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	p, err := New(echoServer(t))
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, time.Second)
	require.NoError(t, err)
	require.Equal(t, "ping\n", got)

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	_, err = roundTrip(c, r, 2*time.Second)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "latency applies both ways")
	p.SetLatency(0)

	p.Blackhole(true)
	_, err = roundTrip(c, r, 200*time.Millisecond)
	require.Error(t, err, "nothing comes back while blackholed")
	p.Blackhole(false)
	_, err = roundTrip(c, r, time.Second)
	require.Error(t, err, "connections open during a blackhole are reset")

	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	_, err = roundTrip(c2, r2, time.Second)
	require.NoError(t, err)
	p.Reset()
	_, err = roundTrip(c2, r2, time.Second)
	require.Error(t, err)
	require.EqualValues(t, 2, p.Accepted())
	require.NoError(t, p.Close())
}
