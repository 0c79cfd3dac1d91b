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

package initializer_test

import (
	"context"
	"testing"

	"k8s.io/apiserver/pkg/admission"

	"github.com/fedmesh/fedmesh/generated/clientset/versioned"
	"github.com/fedmesh/fedmesh/generated/clientset/versioned/fake"
	informers "github.com/fedmesh/fedmesh/generated/informers/externalversions"
	"github.com/fedmesh/fedmesh/pkg/admission/initializer"
)

type wantsBoth struct {
	factory informers.SharedInformerFactory
	client  versioned.Interface
}

var (
	_ initializer.WantsFedmeshInformerFactory = &wantsBoth{}
	_ initializer.WantsFedmeshClientset       = &wantsBoth{}
)

func (w *wantsBoth) SetFedmeshInformerFactory(f informers.SharedInformerFactory) { w.factory = f }
func (w *wantsBoth) SetFedmeshClientset(c versioned.Interface)                   { w.client = c }
func (w *wantsBoth) ValidateInitialization() error                               { return nil }
func (w *wantsBoth) Handles(admission.Operation) bool                            { return false }
func (w *wantsBoth) Admit(context.Context, admission.Attributes, admission.ObjectInterfaces) error {
	return nil
}

type wantsNothing struct{}

func (wantsNothing) Handles(admission.Operation) bool { return false }

func TestInitialize(t *testing.T) {
	client := fake.NewSimpleClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	init := initializer.New(factory, client)

	w := &wantsBoth{}
	init.Initialize(w)
	if w.factory != factory {
		t.Error("the informer factory was not handed over")
	}
	if w.client != client {
		t.Error("the clientset was not handed over")
	}
	// A plugin that wants nothing is left alone.
	init.Initialize(wantsNothing{})
}
