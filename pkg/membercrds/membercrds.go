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

// Package membercrds installs and upgrades the CRDs fedmesh needs in a
// member cluster: ServiceExports, ServiceImports and GlobalTrafficPolicies,
// as artifacts/crds defines them.
//
// Installing a CRD takes the right to create any CRD, which is the right to
// define any API of the member, so only a member's administrator installs
// them ("kubectl fedmesh join", and the test framework as the member's
// admin). fedmesh's own identity in the member may only read the three by
// name and upgrade them in place (memberrbac.SyncerRules): Upgrade never
// creates.
package membercrds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"k8s.io/client-go/dynamic"

	"github.com/fedmesh/fedmesh/artifacts/crds"
)

const (
	// HashAnnotation, on a member CRD fedmesh installed, is the digest of
	// the definition it applied. A CRD carrying the digest of the embedded
	// definition is up to date, which spares comparing a definition the
	// API server has defaulted, and spares the members a write at every
	// start.
	HashAnnotation = "flomesh.io/crd-sha256"
	// managedByLabel marks the CRDs as fedmesh's.
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "fedmesh-syncer"
)

// GVR is the resource of CRDs.
var GVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ErrNotInstalled is returned by Upgrade when a member lacks a CRD.
var ErrNotInstalled = errors.New("not installed")

// CRD is one member CRD as fedmesh applies it.
type CRD struct {
	Name string
	// Hash is the digest of the definition, as HashAnnotation carries it.
	Hash   string
	Object *unstructured.Unstructured
}

// Load reads the CRDs embedded from artifacts/crds, sorted by name, each
// labelled as fedmesh's and annotated with its digest.
func Load() ([]CRD, error) {
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []CRD
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
			c := CRD{Name: u.GetName(), Hash: hex.EncodeToString(sum[:]), Object: u}
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[HashAnnotation] = c.Hash
			u.SetAnnotations(ann)
			lbl := u.GetLabels()
			if lbl == nil {
				lbl = map[string]string{}
			}
			lbl[managedByLabel] = managedByValue
			u.SetLabels(lbl)
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CRDs embedded from artifacts/crds")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Install creates or upgrades every CRD in the member dyn reaches, as
// fieldManager, and waits up to timeout until the member serves them all.
// It needs the right to create CRDs: the member administrator's.
func Install(ctx context.Context, dyn dynamic.Interface, fieldManager string, crds []CRD, timeout time.Duration) error {
	return ensure(ctx, dyn, fieldManager, crds, timeout, true)
}

// Upgrade brings the member's CRDs up to date, as fieldManager, and waits
// up to timeout until the member serves them. Unlike Install it only
// patches CRDs that exist, by name, which is all fedmesh's identity in a
// member may do; a missing CRD is an error wrapping ErrNotInstalled.
func Upgrade(ctx context.Context, dyn dynamic.Interface, fieldManager string, crds []CRD, timeout time.Duration) error {
	return ensure(ctx, dyn, fieldManager, crds, timeout, false)
}

// ensure applies each CRD whose digest the member's copy lacks, creating
// the missing ones only when create is set, and waits until all are
// Established.
func ensure(ctx context.Context, dyn dynamic.Interface, fieldManager string, crds []CRD, timeout time.Duration, create bool) error {
	for _, c := range crds {
		live, err := dyn.Resource(GVR).Get(ctx, c.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && !create:
			return fmt.Errorf("CRD %s: %w: the member's administrator installs it with 'kubectl fedmesh join'", c.Name, ErrNotInstalled)
		case err != nil && !apierrors.IsNotFound(err):
			return err
		case err == nil && live.GetAnnotations()[HashAnnotation] == c.Hash:
			continue
		}
		if err := apply(ctx, dyn, fieldManager, c); err != nil {
			return err
		}
	}
	return WaitEstablished(ctx, dyn, crds, timeout)
}

// apply applies one CRD. The apply is forced: the definitions are
// fedmesh's to keep current, whoever installed them first (an operator's
// kubectl apply, say).
func apply(ctx context.Context, dyn dynamic.Interface, fieldManager string, c CRD) error {
	data, err := json.Marshal(c.Object.Object)
	if err != nil {
		return err
	}
	force := true
	if _, err := dyn.Resource(GVR).Patch(ctx, c.Name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
		return fmt.Errorf("applying CRD %s: %w", c.Name, err)
	}
	return nil
}

// WaitEstablished waits up to timeout until every CRD reports Established.
func WaitEstablished(ctx context.Context, dyn dynamic.Interface, crds []CRD, timeout time.Duration) error {
	var pending string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, c := range crds {
			live, err := dyn.Resource(GVR).Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !established(live) {
				pending = c.Name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && pending != "" {
		return fmt.Errorf("CRD %s is not Established: %w", pending, err)
	}
	return err
}

// established reports whether a CRD's Established condition is True.
func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if c, ok := c.(map[string]interface{}); ok && c["type"] == "Established" && c["status"] == "True" {
			return true
		}
	}
	return false
}
