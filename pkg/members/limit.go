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
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// A member answers what it likes: whoever controls a member's API server,
// or a proxy on the way, could send fedmesh a body of any size, and
// client-go reads a response whole into memory before decoding it, and a
// JSON watch event whole before framing it. Every response fedmesh reads
// from a member is therefore bounded, by a wrapper of the transport that
// counts what is read.

const (
	// DefaultMaxResponseBytes bounds the body of a response that is not a
	// watch. Lists are the largest: an informer's first list of a member
	// is served whole from the watch cache, and a member at Kubernetes'
	// scalability threshold of 10,000 Services answers a list of Services
	// of 10 to 40 MB, managed fields included. 256 MiB leaves room for
	// several times that, while one response can no longer exhaust the
	// memory of fedmesh.
	DefaultMaxResponseBytes = 256 << 20
	// DefaultMaxEventBytes bounds each event of a watch. etcd refuses
	// requests over 1.5 MiB by default, which bounds every object a member
	// stores (as protobuf for built-in types, as JSON for custom
	// resources); 4 MiB leaves room for the JSON of the largest of them
	// and for the event around it.
	DefaultMaxEventBytes = 4 << 20
)

// ErrResponseTooLarge is wrapped by the error of a response of a member
// that exceeds a limit.
var ErrResponseTooLarge = errors.New("response of the member exceeds fedmesh's limit")

// Limits bound what fedmesh reads from a member; zero takes the default.
type Limits struct {
	// MaxResponseBytes bounds the body of every response but a watch's.
	MaxResponseBytes int64
	// MaxEventBytes bounds each event of a watch.
	MaxEventBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxResponseBytes <= 0 {
		l.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = DefaultMaxEventBytes
	}
	return l
}

// LimitResponses makes every response read through cfg bounded by l: a
// response body larger than l.MaxResponseBytes, or a watch event larger
// than l.MaxEventBytes, fails with an error wrapping ErrResponseTooLarge
// rather than being read.
func LimitResponses(cfg *rest.Config, l Limits) {
	l = l.withDefaults()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &limitedTransport{rt: rt, limits: l}
	})
}

// limitedTransport bounds the bodies of the responses of rt. It is the
// innermost wrapper of client-go's transport, so it sees the body as the
// decoders will read it, after any gzip is undone.
type limitedTransport struct {
	rt     http.RoundTripper
	limits Limits
}

var _ utilnet.RoundTripperWrapper = &limitedTransport{}

// WrappedRoundTripper lets client-go reach the transport underneath, to
// close its idle connections.
func (t *limitedTransport) WrappedRoundTripper() http.RoundTripper { return t.rt }

// RoundTrip implements http.RoundTripper.
func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	// An upgraded connection (exec, port-forward) is a stream both ways,
	// not a body; fedmesh opens none to members.
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, nil
	}
	if resp.StatusCode == http.StatusOK && isWatch(req) {
		body, err := limitWatch(req, resp, t.limits.MaxEventBytes)
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		resp.Body = body
		return resp, nil
	}
	limit := t.limits.MaxResponseBytes
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s %s: a body of %d bytes, over the limit of %d", ErrResponseTooLarge,
			req.Method, req.URL.Path, resp.ContentLength, limit)
	}
	resp.Body = &limitedBody{body: resp.Body, remaining: limit, tooLarge: func() error {
		return fmt.Errorf("%w: %s %s: a body over the limit of %d bytes", ErrResponseTooLarge, req.Method, req.URL.Path, limit)
	}}
	return resp, nil
}

// isWatch reports whether req asks for a watch, as client-go asks for one:
// by the watch parameter. (A watch of the deprecated /watch/ paths would be
// bounded as a whole response: it would end, not run unbounded.)
func isWatch(req *http.Request) bool {
	w, err := strconv.ParseBool(req.URL.Query().Get("watch"))
	return err == nil && w
}

// limitedBody fails a read beyond remaining bytes. The reader gets an
// error, never a body cut short that could decode to less than was sent.
type limitedBody struct {
	body      io.ReadCloser
	remaining int64
	tooLarge  func() error
	err       error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte past the limit is enough to know it is exceeded.
	if int64(len(p)) > b.remaining+1 {
		p = p[:b.remaining+1]
	}
	n, err := b.body.Read(p)
	b.remaining -= int64(n)
	if b.remaining < 0 {
		b.err = b.tooLarge()
		return n - 1, b.err
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }

// limitWatch wraps the body of a watch so that no event exceeds limit bytes.
// client-go frames a JSON watch with a json.Decoder, which holds a whole
// event in memory before the streaming decoder's own limit (16 MiB) is
// checked, so the wrapper follows the framing itself: JSON values for
// JSON, length prefixes for protobuf. A watch in another format is
// refused, as its events could not be bounded.
func limitWatch(req *http.Request, resp *http.Response, limit int64) (io.ReadCloser, error) {
	mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		mediaType = ""
	}
	var f framer
	switch mediaType {
	case "application/json":
		f = &jsonFramer{limit: limit}
	case "application/vnd.kubernetes.protobuf":
		f = &lengthFramer{limit: limit}
	default:
		return nil, fmt.Errorf("watch %s: the member answered in content type %q, whose events fedmesh cannot bound", req.URL.Path, mediaType)
	}
	return &watchBody{body: resp.Body, framer: f, limit: limit, path: req.URL.Path}, nil
}

// framer follows the frames of a watch stream.
type framer interface {
	// scan reads the next bytes of the stream, and returns how many of
	// them are within the limit, and whether a frame exceeded it.
	scan(p []byte) (int, bool)
}

// watchBody fails a watch stream once a frame exceeds its limit.
type watchBody struct {
	body   io.ReadCloser
	framer framer
	limit  int64
	path   string
	err    error
}

func (b *watchBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.body.Read(p)
	if ok, over := b.framer.scan(p[:n]); over {
		b.err = fmt.Errorf("%w: watch %s: an event over the limit of %d bytes", ErrResponseTooLarge, b.path, b.limit)
		return ok, b.err
	}
	return n, err
}

func (b *watchBody) Close() error { return b.body.Close() }

// jsonFramer follows the top-level JSON values of a stream, as
// json.Decoder splits them, and counts the bytes of each. It tracks only
// nesting and strings: the decoder still rejects malformed JSON.
type jsonFramer struct {
	limit    int64
	size     int64 // bytes of the current value so far
	depth    int
	inString bool
	escaped  bool
}

func (f *jsonFramer) scan(p []byte) (int, bool) {
	for i := 0; i < len(p); {
		if f.inString && !f.escaped {
			// Most of an event is strings: skip to the next byte that
			// may end one.
			j := bytes.IndexAny(p[i:], `"\`)
			if j < 0 {
				j = len(p) - i
			}
			if f.size+int64(j) > f.limit {
				return i + int(f.limit-f.size), true
			}
			f.size += int64(j)
			if i += j; i == len(p) {
				break
			}
		}
		c := p[i]
		if f.size++; f.size > f.limit {
			return i, true
		}
		i++
		if f.inString {
			switch {
			case f.escaped:
				f.escaped = false
			case c == '\\':
				f.escaped = true
			case c == '"':
				f.inString = false
				if f.depth == 0 {
					f.size = 0
				}
			}
			continue
		}
		switch c {
		case '"':
			f.inString = true
		case '{', '[':
			f.depth++
		case '}', ']':
			// An unbalanced closer is the decoder's error to report.
			if f.depth > 0 {
				f.depth--
			}
			if f.depth == 0 {
				f.size = 0
			}
		case ' ', '\t', '\r', '\n':
			// Between top-level values: the next one starts afresh.
			if f.depth == 0 {
				f.size = 0
			}
		}
	}
	return len(p), false
}

// lengthFramer follows the frames of a protobuf watch: each a 4-byte
// big-endian length, then that many bytes.
type lengthFramer struct {
	limit     int64
	header    [4]byte
	got       int   // bytes of the header read so far
	remaining int64 // bytes of the current frame still to come
}

func (f *lengthFramer) scan(p []byte) (int, bool) {
	for i := 0; i < len(p); {
		if f.remaining > 0 {
			step := min(f.remaining, int64(len(p)-i))
			f.remaining -= step
			i += int(step)
			continue
		}
		f.header[f.got] = p[i]
		f.got++
		i++
		if f.got == len(f.header) {
			f.got = 0
			size := int64(binary.BigEndian.Uint32(f.header[:]))
			if size > f.limit {
				return i, true
			}
			f.remaining = size
		}
	}
	return len(p), false
}
