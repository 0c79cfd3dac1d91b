/*
Copyright The fedmesh Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

	http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/
package loopback

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nameServer is a backend that answers every line with its name and the
// line, until the connection ends.
func nameServer(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s %s\n", name, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// client is one connection through the balancer.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, b *Balancer) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// ask sends a line and returns the answer, or the error that ended the
// connection.
func (c *client) ask(line string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c.conn, line); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func TestBalancerRoundRobin(t *testing.T) {
	b, err := NewBalancer(0, nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c"))
	require.NoError(t, err)
	defer b.Close()

	var got []string
	for i := range 6 {
		s, err := dial(t, b).ask(fmt.Sprint(i))
		require.NoError(t, err)
		got = append(got, s)
	}
	assert.Equal(t, []string{"a 0", "b 1", "c 2", "a 3", "b 4", "c 5"}, got)
	assert.Equal(t, []int{2, 2, 2}, b.Connections())
}

func TestBalancerDrainCutsAndMovesClients(t *testing.T) {
	b, err := NewBalancer(0, nameServer(t, "a"), nameServer(t, "b"))
	require.NoError(t, err)
	defer b.Close()

	onA, onB := dial(t, b), dial(t, b)
	for _, tc := range []struct {
		c    *client
		want string
	}{{onA, "a x"}, {onB, "b x"}} {
		s, err := tc.c.ask("x")
		require.NoError(t, err)
		require.Equal(t, tc.want, s)
	}

	assert.Equal(t, 1, b.Drain(0), "the drain cuts the one connection to a")
	_, err = onA.ask("y")
	assert.Error(t, err, "a connection to a drained backend ends")
	s, err := onB.ask("y")
	require.NoError(t, err, "connections to other backends go on")
	assert.Equal(t, "b y", s)
	for range 3 {
		s, err := dial(t, b).ask("z")
		require.NoError(t, err)
		assert.Equal(t, "b z", s, "new connections skip the drained backend")
	}

	b.SwitchTo(0)
	_, err = onB.ask("w")
	assert.Error(t, err, "switching to a cuts the connections to b")
	s, err = dial(t, b).ask("w")
	require.NoError(t, err)
	assert.Equal(t, "a w", s)

	b.EnableAll()
	seen := map[string]bool{}
	for range 2 {
		s, err := dial(t, b).ask("v")
		require.NoError(t, err)
		seen[s] = true
	}
	assert.Equal(t, map[string]bool{"a v": true, "b v": true}, seen)
}

func TestBalancerSkipsADeadBackend(t *testing.T) {
	// A port nobody listens on: dials are refused at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()

	b, err := NewBalancer(0, dead, nameServer(t, "b"))
	require.NoError(t, err)
	defer b.Close()
	for range 3 {
		s, err := dial(t, b).ask("x")
		require.NoError(t, err)
		assert.Equal(t, "b x", s)
	}

	b.Drain(1)
	c := dial(t, b)
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = c.r.ReadString('\n')
	assert.ErrorIs(t, err, io.EOF, "with no backend left, a client is disconnected")
}

func TestBalancerRefusesOtherAddresses(t *testing.T) {
	for _, backend := range []string{"10.0.0.1:443", "example.com:443", "localhost:443", "127.0.0.1"} {
		_, err := NewBalancer(0, backend)
		assert.Error(t, err, backend)
	}
	_, err := NewBalancer(0)
	assert.Error(t, err)
}

func TestBalancerCloseEndsEverything(t *testing.T) {
	b, err := NewBalancer(0, nameServer(t, "a"))
	require.NoError(t, err)
	c := dial(t, b)
	_, err = c.ask("x")
	require.NoError(t, err)
	b.Close()
	_, err = c.ask("y")
	assert.Error(t, err)
	assert.Equal(t, 0, b.Open())
	_, err = net.DialTimeout("tcp", b.Addr(), time.Second)
	assert.Error(t, err, "a closed balancer listens no more")
}
