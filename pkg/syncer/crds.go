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

package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/fedmesh/fedmesh/artifacts/crds"
)

// CRDHashAnnotation, on a member CRD the syncer installed, is the digest
// of the definition it applied. A CRD carrying the digest of the embedded
// definition is up to date, which spares comparing a definition the API
// server has defaulted, and spares the members a write at every start.
const CRDHashAnnotation = "flomesh.io/crd-sha256"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crd is one member CRD as the syncer applies it.
type crd struct {
	name string
	hash string
	obj  *unstructured.Unstructured
}

// loadCRDs reads the CRDs embedded from artifacts/crds.
func loadCRDs() ([]crd, error) {
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []crd
	for _, f := range files {
		b, err := crds.FS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			canonical, err := json.Marshal(u.Object)
			if err != nil {
				return nil, err
			}
			sum := sha256.Sum256(canonical)
			c := crd{name: u.GetName(), hash: hex.EncodeToString(sum[:]), obj: u}
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[CRDHashAnnotation] = c.hash
			u.SetAnnotations(ann)
			lbl := u.GetLabels()
			if lbl == nil {
				lbl = map[string]string{}
			}
			lbl[ManagedByLabel] = ManagedByValue
			u.SetLabels(lbl)
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CRDs embedded from artifacts/crds")
	}
	return out, nil
}

// installCRDs installs or upgrades the member CRDs and waits until the
// member serves them. The apply is forced: these definitions are the
// syncer's to keep current, whoever installed them first (an operator's
// kubectl apply, say).
func (s *Syncer) installCRDs(ctx context.Context, m *member) error {
	for _, c := range s.crds {
		live, err := m.dyn.Resource(crdGVR).Get(ctx, c.name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil && live.GetAnnotations()[CRDHashAnnotation] == c.hash {
			continue
		}
		data, err := json.Marshal(c.obj.Object)
		if err != nil {
			return err
		}
		countWrite(m, "customresourcedefinitions", "apply", "", c.name)
		force := true
		if _, err := m.dyn.Resource(crdGVR).Patch(ctx, c.name, types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", c.name, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, c := range s.crds {
			live, err := m.dyn.Resource(crdGVR).Get(ctx, c.name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !established(live) {
				return false, nil
			}
		}
		return true, nil
	})
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if c, ok := c.(map[string]interface{}); ok && c["type"] == "Established" && c["status"] == "True" {
			return true
		}
	}
	return false
}
