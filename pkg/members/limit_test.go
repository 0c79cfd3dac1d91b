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
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
)

// services returns a list of n Services, each with an annotation of pad
// bytes.
func services(n, pad int) *corev1.ServiceList {
	list := &corev1.ServiceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceList"}}
	list.ResourceVersion = "1"
	for i := range n {
		list.Items = append(list.Items, *service("svc-"+strconv.Itoa(i), pad))
	}
	return list
}

func service(name string, pad int) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: "1", Annotations: map[string]string{"pad": strings.Repeat("x", pad)}},
	}
}

// member is a loopback HTTPS server standing for a member's API server:
// lists of namespace "small" fit the limits of the test, those of "large"
// do not, and so for the events of a watch, in JSON or in protobuf.
// The content type of the last watch answered is sent on watched.
func member(t *testing.T) (srv *httptest.Server, watched chan string) {
	t.Helper()
	watched = make(chan string, 1)
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		large := strings.Contains(r.URL.Path, "/namespaces/large/")
		if r.URL.Query().Get("watch") == "true" {
			watched <- watchOf(w, r, large)
			return
		}
		body, err := json.Marshal(services(10, map[bool]int{false: 100, true: 10 << 10}[large]))
		if err != nil {
			panic(err)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		// Written in parts and flushed, a body without Content-Length is
		// sent chunked: only reading it tells its size.
		for len(body) > 0 {
			n := min(len(body), 4096)
			_, _ = w.Write(body[:n])
			w.(http.Flusher).Flush()
			body = body[n:]
		}
	}))
	t.Cleanup(srv.Close)
	return srv, watched
}

// watchOf answers a watch with a small event, then one of 10 KiB when
// large, then holds the stream open, and returns the content type. The
// client may hang up at any time: write errors end the stream.
func watchOf(w http.ResponseWriter, r *http.Request, large bool) string {
	events := []*corev1.Service{service("small", 100)}
	if large {
		events = append(events, service("large", 10<<10))
	}
	protobuf := strings.Contains(r.Header.Get("Accept"), "protobuf")
	mediaType := "application/json"
	if protobuf {
		mediaType = "application/vnd.kubernetes.protobuf"
	}
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
	w.Header().Set("Content-Type", mediaType+map[bool]string{false: "", true: ";stream=watch"}[protobuf])
	w.WriteHeader(http.StatusOK)
	enc := streaming.NewEncoder(info.StreamSerializer.Framer.NewFrameWriter(w), info.StreamSerializer.Serializer)
	objEnc := scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion)
	for _, svc := range events {
		raw, err := runtime.Encode(objEnc, svc)
		if err != nil {
			panic(err)
		}
		if err := enc.Encode(&metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Raw: raw}}); err != nil {
			return mediaType
		}
		w.(http.Flusher).Flush()
	}
	<-r.Context().Done()
	return mediaType
}

// clientOf returns a client of srv through the configuration fedmesh
// builds, with small limits.
func clientOf(t *testing.T, srv *httptest.Server, protobuf bool) kubernetes.Interface {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	opts := DefaultOptions()
	opts.Limits = Limits{MaxResponseBytes: 32 << 10, MaxEventBytes: 8 << 10}
	target := Resolve(secretCluster("s"), secrets{"s": secret(srv.URL, string(ca), "t0k3n")}, opts)
	cfg, err := target.RESTConfig("fedmesh-test", 10*time.Second)
	require.NoError(t, err)
	if !protobuf {
		cfg.AcceptContentTypes = "application/json"
		cfg.ContentType = "application/json"
	}
	kube, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return kube
}

func TestResponsesAreLimited(t *testing.T) {
	srv, _ := member(t)
	kube := clientOf(t, srv, false)
	ctx := context.Background()
	for _, tc := range []struct {
		name, namespace string
		chunked         bool
		tooLarge        bool
	}{
		{name: "a small list", namespace: "small"},
		{name: "a small list, chunked", namespace: "small", chunked: true},
		{name: "a large list", namespace: "large", tooLarge: true},
		{name: "a large list, chunked", namespace: "large", chunked: true, tooLarge: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kube.CoreV1().RESTClient().Get().Namespace(tc.namespace).Resource("services")
			if tc.chunked {
				req = req.Param("chunked", "true")
			}
			list := &corev1.ServiceList{}
			err := req.Do(ctx).Into(list)
			if !tc.tooLarge {
				require.NoError(t, err)
				assert.Len(t, list.Items, 10)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrResponseTooLarge), "%v", err)
			assert.ErrorContains(t, err, "over the limit of 32768")
			assert.Empty(t, list.Items, "nothing decoded of a response cut short")
		})
	}
}

// within receives from ch, failing the test after 10 s.
func within[T any](t *testing.T, ch <-chan T) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received within 10s")
		var zero T
		return zero, false
	}
}

func TestWatchEventsAreLimited(t *testing.T) {
	srv, watched := member(t)
	for _, protobuf := range []bool{false, true} {
		kube := clientOf(t, srv, protobuf)
		for _, namespace := range []string{"small", "large"} {
			t.Run(map[bool]string{false: "json", true: "protobuf"}[protobuf]+"/"+namespace, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w, err := kube.CoreV1().Services(namespace).Watch(ctx, metav1.ListOptions{})
				require.NoError(t, err)
				defer w.Stop()
				ev, _ := within(t, w.ResultChan())
				require.Equal(t, watch.Added, ev.Type, "%v", ev.Object)
				assert.Equal(t, "small", ev.Object.(*corev1.Service).Name)
				if namespace == "small" {
					select {
					case ev, ok := <-w.ResultChan():
						t.Fatalf("the watch went on: %v %v", ok, ev)
					case <-time.After(100 * time.Millisecond):
					}
					w.Stop()
					served, _ := within(t, watched)
					assert.Equal(t, protobuf, served == "application/vnd.kubernetes.protobuf", "the format of the watch")
					return
				}
				ev, _ = within(t, w.ResultChan())
				require.Equal(t, watch.Error, ev.Type, "the large event is refused, not decoded")
				status, ok := ev.Object.(*metav1.Status)
				require.True(t, ok)
				assert.Contains(t, status.Message, "an event over the limit of 8192 bytes")
				_, open := within(t, w.ResultChan())
				assert.False(t, open, "the watch ends")
				cancel()
				served, _ := within(t, watched)
				assert.Equal(t, protobuf, served == "application/vnd.kubernetes.protobuf", "the format of the watch")
			})
		}
	}
}

// A watch in a format whose events cannot be followed is refused.
func TestWatchOfUnknownFormatIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/cbor-seq")
		_, _ = w.Write([]byte("anything"))
	}))
	defer srv.Close()
	client := &http.Client{Transport: &limitedTransport{rt: http.DefaultTransport, limits: Limits{}.withDefaults()}}
	_, err := client.Get(srv.URL + "/api/v1/services?watch=1")
	assert.ErrorContains(t, err, `content type "application/cbor-seq"`)
}

// read feeds the stream to f in chunks of size and returns how many bytes
// passed before the limit was exceeded, and whether it was.
func read(f framer, stream []byte, size int) (int, bool) {
	passed := 0
	for len(stream) > 0 {
		n := min(size, len(stream))
		ok, over := f.scan(stream[:n])
		passed += ok
		if over {
			return passed, true
		}
		stream = stream[n:]
	}
	return passed, false
}

func TestJSONFramer(t *testing.T) {
	long := strings.Repeat("x", 90)
	for _, tc := range []struct {
		name   string
		stream string
		passed int // bytes passed before the limit tripped, -1 when it did not
	}{
		{name: "events under the limit, many in all",
			stream: strings.Repeat(`{"type":"ADDED","object":{"a":"`+long[:60]+`"}}`+"\n", 100), passed: -1},
		{name: "no newline between events",
			stream: strings.Repeat(`{"a":"`+long+`"}`, 100), passed: -1},
		{name: "an event over the limit", stream: `{"a":"` + long + long + `"}`, passed: 100},
		{name: "an event spread over lines",
			stream: "{\"a\":\"" + long + "\"\n,\"b\":\"" + long + "\"}", passed: 100},
		{name: "braces and quotes in strings",
			stream: strings.Repeat(`{"a":"}}\"{{]]`+long[:60]+`"}`+" ", 10), passed: -1},
		{name: "escaped quote does not end the string",
			stream: `["\"` + long + `", "` + long + `"]`, passed: 100},
		{name: "a huge number", stream: strings.Repeat("1", 200), passed: 100},
		{name: "top-level strings", stream: strings.Repeat(`"`+long+`" `, 10), passed: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 7, 4096} {
				passed, over := read(&jsonFramer{limit: 100}, []byte(tc.stream), chunk)
				if tc.passed < 0 {
					assert.False(t, over, "chunks of %d", chunk)
				} else {
					assert.True(t, over, "chunks of %d", chunk)
					assert.Equal(t, tc.passed, passed, "chunks of %d", chunk)
				}
			}
		})
	}
}

func TestLengthFramer(t *testing.T) {
	frame := func(n int) []byte {
		b := make([]byte, 4+n)
		binary.BigEndian.PutUint32(b, uint32(n))
		return b
	}
	var fits []byte
	for range 50 {
		fits = append(fits, frame(100)...)
	}
	for _, chunk := range []int{1, 3, 4096} {
		_, over := read(&lengthFramer{limit: 100}, fits, chunk)
		assert.False(t, over, "chunks of %d", chunk)
		passed, over := read(&lengthFramer{limit: 100}, append(append([]byte{}, fits...), frame(101)...), chunk)
		assert.True(t, over, "chunks of %d", chunk)
		assert.Equal(t, len(fits)+4, passed, "the header of the frame too large passes, not its body")
		// A header of 4 GiB is refused before anything of its frame is read.
		_, over = read(&lengthFramer{limit: 100}, []byte{0xff, 0xff, 0xff, 0xff}, chunk)
		assert.True(t, over)
	}
}

// A body cut at the limit fails its reader at the limit, and only there.
func TestLimitedBody(t *testing.T) {
	for _, size := range []int{99, 100, 101, 1000} {
		b := &limitedBody{body: io.NopCloser(bytes.NewReader(make([]byte, size))), remaining: 100,
			tooLarge: func() error { return ErrResponseTooLarge }}
		got, err := io.ReadAll(b)
		if size <= 100 {
			assert.NoError(t, err)
			assert.Len(t, got, size)
			continue
		}
		assert.ErrorIs(t, err, ErrResponseTooLarge)
		assert.Len(t, got, 100)
	}
}
