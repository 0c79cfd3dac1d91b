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
// Command gencerts writes the certificates of a local federation into a
// directory, so the scripts under hack/ need no openssl: a CA (ca.crt,
// ca.key), one serving certificate for every local server (serving.crt),
// client certificates for an admin (admin.crt) and the aggregator's front
// proxy (front-proxy.crt), and a service-account signing key (sa.key).
// Existing files are kept, so a second run is a no-op.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedmesh/fedmesh/test/framework/pki"
)

func main() {
	dir := flag.String("dir", "", "directory to write the certificates into")
	dns := flag.String("serving-dns", "localhost", "comma-separated DNS names of the serving certificate")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "gencerts: --dir is required")
		os.Exit(2)
	}
	if err := run(*dir, strings.Split(*dns, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
}

func run(dir string, dnsNames []string) error {
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("fedmesh-local-ca")
	if err != nil {
		return err
	}
	serving, err := ca.Serving(dnsNames, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return err
	}
	admin, err := ca.Client("admin", "system:masters")
	if err != nil {
		return err
	}
	proxy, err := ca.Client("front-proxy-client")
	if err != nil {
		return err
	}
	for name, kp := range map[string]*pki.KeyPair{"serving": serving, "admin": admin, "front-proxy": proxy} {
		if _, _, err := kp.WriteFiles(dir, name); err != nil {
			return err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	caKey, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey}), 0o600); err != nil {
		return err
	}
	_, err = ca.WriteCert(dir, "ca")
	return err
}
