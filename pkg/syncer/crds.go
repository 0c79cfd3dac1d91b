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
	"context"
	"time"

	"github.com/fedmesh/fedmesh/pkg/membercrds"
)

// upgradeCRDs brings a member's CRDs to the definitions this syncer was
// built with and waits until the member serves them. The member's
// administrator installed them ("kubectl fedmesh join"); the syncer may
// only patch them by name, so a member without them fails with
// membercrds.ErrNotInstalled, and the syncer retries until they appear.
func (s *Syncer) upgradeCRDs(ctx context.Context, m *member) error {
	return membercrds.Upgrade(ctx, m.dyn, FieldManager, s.crds, 30*time.Second)
}
