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

package members

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

// framerResult is what a framer makes of a stream fed in chunks.
type framerResult struct {
	passed int
	over   bool
}

// chunked feeds stream to a new framer in chunks of 1 byte, of size, and
// whole, and fails unless the three agree: a frame's size must not depend
// on how the network cut the stream.
func chunked(t *testing.T, newFramer func() framer, stream []byte, size int) framerResult {
	t.Helper()
	var first framerResult
	for i, n := range []int{1, size, max(len(stream), 1)} {
		passed, over := read(newFramer(), stream, n)
		if passed < 0 || passed > len(stream) {
			t.Fatalf("chunks of %d: %d bytes passed of %d", n, passed, len(stream))
		}
		r := framerResult{passed, over}
		if i == 0 {
			first = r
		} else if r != first {
			t.Fatalf("chunks of 1 give %+v, chunks of %d give %+v", first, n, r)
		}
	}
	return first
}

// FuzzJSONFramer checks the framer of JSON watches: its verdict does not
// depend on the chunks, and on a stream of JSON objects, arrays and
// strings (what a watch sends), it trips exactly on the first value over
// the limit, after passing that value's first limit bytes.
func FuzzJSONFramer(f *testing.F) {
	f.Add([]byte(`{"type":"ADDED","object":{"a":"b"}}`+"\n"+`{"type":"DELETED","object":{}}`), uint16(40), uint8(7))
	f.Add([]byte(`{"a":"\"}}]]\\"}`+"\r\n\t"+`["x",{"y":[1,2,{}]}]`), uint16(10), uint8(3))
	f.Add([]byte(`"top" "level" {"a":1}{"b":2}`), uint16(6), uint8(1))
	f.Add([]byte(strings.Repeat("1", 50)), uint16(20), uint8(9))
	f.Add([]byte(`}}}]]{"a":"\u00e9"}`), uint16(5), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, limit uint16, size uint8) {
		l := int64(limit%512) + 1
		got := chunked(t, func() framer { return &jsonFramer{limit: l} }, stream, int(size)+1)

		// What json.Decoder, client-go's framer, makes of the stream.
		dec := json.NewDecoder(bytes.NewReader(stream))
		want := framerResult{}
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil || (raw[0] != '{' && raw[0] != '[' && raw[0] != '"') {
				// Malformed JSON is the decoder's to refuse, and a
				// top-level number or literal is no watch event: the
				// framer only has to be consistent on them.
				return
			}
			if !want.over && int64(len(raw)) > l {
				start := int(dec.InputOffset()) - len(raw)
				want = framerResult{passed: start + int(l), over: true}
			}
		}
		if !want.over {
			want.passed = len(stream)
		}
		if got != want {
			t.Fatalf("limit %d: the framer gives %+v, the decoder's values %+v", l, got, want)
		}
	})
}

// FuzzLengthFramer checks the framer of protobuf watches against the
// framing itself, for any chunks.
func FuzzLengthFramer(f *testing.F) {
	frame := func(n int) []byte {
		b := make([]byte, 4+n)
		binary.BigEndian.PutUint32(b, uint32(n))
		return b
	}
	f.Add(append(frame(3), frame(10)...), uint16(5), uint8(2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(100), uint8(0))
	f.Add([]byte{0, 0}, uint16(1), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, limit uint16, size uint8) {
		l := int64(limit)
		got := chunked(t, func() framer { return &lengthFramer{limit: l} }, stream, int(size)+1)
		want := framerResult{passed: len(stream)}
		for i := 0; i+4 <= len(stream); {
			n := int64(binary.BigEndian.Uint32(stream[i:]))
			if n > l {
				// The header passes, none of the body.
				want = framerResult{passed: i + 4, over: true}
				break
			}
			i += 4 + int(n)
		}
		if got != want {
			t.Fatalf("limit %d: the framer gives %+v, the frames %+v", l, got, want)
		}
	})
}

// FuzzLimitedBody checks that a bounded body, read in any sizes, gives
// exactly the body when it fits, and otherwise its first limit bytes and
// an error wrapping ErrResponseTooLarge.
func FuzzLimitedBody(f *testing.F) {
	f.Add(uint16(100), uint16(100), []byte{1, 255, 7})
	f.Add(uint16(101), uint16(100), []byte{0})
	f.Add(uint16(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, size, limit uint16, reads []byte) {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i * 7)
		}
		b := &limitedBody{body: io.NopCloser(bytes.NewReader(body)), remaining: int64(limit),
			tooLarge: func() error { return ErrResponseTooLarge }}
		var got []byte
		var err error
		for i := 0; err == nil; i++ {
			n := 1
			if len(reads) > 0 {
				n += int(reads[i%len(reads)])
			}
			p := make([]byte, n)
			var k int
			k, err = b.Read(p)
			if k < 0 || k > n {
				t.Fatalf("Read of %d bytes returned %d", n, k)
			}
			got = append(got, p[:k]...)
			if i > int(size)+int(limit)+2 {
				t.Fatalf("no end after %d reads", i)
			}
		}
		if int(size) <= int(limit) {
			if err != io.EOF || !bytes.Equal(got, body) {
				t.Fatalf("a body of %d within %d: %d bytes, %v", size, limit, len(got), err)
			}
			return
		}
		if !errors.Is(err, ErrResponseTooLarge) || !bytes.Equal(got, body[:limit]) {
			t.Fatalf("a body of %d over %d: %d bytes, %v", size, limit, len(got), err)
		}
	})
}

// FuzzResolveSecret checks the parsing of a credentials Secret, which
// whoever may write Secrets of the members' namespace controls: a Secret
// fedmesh accepts makes a client of an https server, without user info,
// query or fragment, with a non-empty token of one header-safe word, and
// a refusal never repeats the token.
func FuzzResolveSecret(f *testing.F) {
	f.Add("https://127.0.0.1:6443", []byte("ca"), []byte("t0k3n\n"), false)
	f.Add("127.0.0.1:6443", []byte{}, []byte("a.b.c"), false)
	f.Add("http://h", []byte{}, []byte("secret-token"), true)
	f.Add("https://u:p@h/path?q#f", []byte{}, []byte("secret-token"), false)
	f.Add("https://h", []byte{}, []byte(" \n"), false)
	f.Add("https://h", []byte{}, []byte("two words"), false)
	f.Add("https://[::1]:6443", []byte{}, []byte("x\r\nX-Header: 1"), false)
	f.Add("", []byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, server string, ca, token []byte, plainHTTP bool) {
		opts := DefaultOptions()
		opts.AllowPlainHTTP = plainHTTP
		target := Resolve(secretCluster("s"), secrets{"s": secret(server, string(ca), string(token))}, opts)
		cfg, err := target.RESTConfig("fedmesh-fuzz", time.Second)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("a refusal that does not wrap ErrRefused: %v", err)
			}
			if tok := strings.TrimSpace(string(token)); len(tok) >= 8 && strings.Contains(err.Error(), tok) &&
				!strings.Contains(server, tok) {
				t.Fatalf("the refusal repeats the token: %v", err)
			}
			return
		}
		u, perr := url.Parse(cfg.Host)
		if perr != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			(u.Scheme != "https" && !(plainHTTP && u.Scheme == "http")) {
			t.Fatalf("accepted server %q as %q", server, cfg.Host)
		}
		if cfg.BearerToken == "" || cfg.BearerToken != strings.TrimSpace(string(token)) {
			t.Fatalf("token %q accepted as %q", token, cfg.BearerToken)
		}
		for _, c := range []byte(cfg.BearerToken) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("accepted a token with byte %#x, which no Authorization header carries: %q", c, cfg.BearerToken)
			}
		}
		if !bytes.Equal(cfg.CAData, ca) {
			t.Fatalf("CA changed")
		}
	})
}
