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

package clusterrefs

// The race, and how pending references close it.
//
// Two plugins keep policies sound: ClusterKeyResolution admits a policy only
// if the Clusters it names exist, and ClusterInUseProtection lets a Cluster go
// (or change its key) only if no policy names it. Each judges, then the
// storage writes; nothing spans the two objects. Checks alone, even fresh
// quorum reads on both sides, leave a write skew:
//
//	policy write                         cluster delete
//	1. reads: Cluster C exists
//	                                      2. lists policies: none names C
//	                                      3. deletes C
//	4. stores the policy, naming C       (dangling)
//
// The window 1–4 is the time between a request's admission and its etcd
// write: short, but real, and it exists whichever side reads what.
//
// It is closed by making the Cluster object the point where the two writes
// meet. Before ClusterKeyResolution admits a policy write that adds key K, it
// records a pending reference on K's Cluster: a merge patch of the annotation
// PendingAnnotation, conditional on the resourceVersion it checked (so the
// check and the record are one atomic step, and a Cluster deleted or re-keyed
// meanwhile makes it fail). ClusterInUseProtection judges a delete or a
// re-key from the stored Cluster the storage hands it, and the storage then
// deletes or updates only if the Cluster still has that resourceVersion
// (etcd3's OptimisticDelete and GuaranteedUpdate compare the mod revision;
// on a mismatch they read again and re-run admission). So either
//
//   - the reference was recorded before the version the Cluster plugin judges:
//     it sees the reference, and refuses while the policy write may still be
//     stored (an unsettled reference), then sees the stored policy in its
//     fresh list and refuses naming it; or
//   - it was recorded after: the Cluster's version changed, the delete's
//     conditional write fails, and the storage retries, judging again with
//     the reference in view; or
//   - the Cluster was gone (or re-keyed, or being deleted) first: the
//     conditional patch fails and the policy is refused.
//
// No interleaving lets both through, with any number of API server replicas,
// since all of it is decided in etcd.
//
// A reference is settled, and stops holding the Cluster, once a fresh read
// of its policy shows the write stored or doomed: a create is settled when a
// policy of that name exists (its own, or another that makes it fail with
// AlreadyExists); an update is settled when the policy's resourceVersion is no
// longer the one the update was based on (it was stored, or its conditional
// write will fail and the update be re-admitted, recording a new reference),
// or the policy is gone. What a fresh read cannot settle is a create of a
// policy that does not exist: still in flight, or failed after admission
// (which our plugins, running last, make rare: an etcd error, a timeout). For
// those the reference carries an expiry: the request's own deadline, past
// which its storage write can no longer start, plus a margin for the commit
// and for clock skew between replicas. Deleting a policy settles the
// references of its stored writes (ClusterKeyResolution removes them), so
// that "delete the policy, then the cluster" never waits. A dry run records
// nothing: it is never stored.
//
// What remains:
//   - a policy write that fails after admission holds the Clusters it added
//     until the policy next changes or the reference expires (about the
//     request timeout plus ExpiryMargin); a delete meanwhile is refused with
//     a Conflict that says so, and succeeds when retried later. Such failures
//     are rare: fedmesh's plugins run after the generic ones, and what is
//     left is storage errors and timeouts;
//   - with ClusterKeyResolution disabled no references are recorded, and
//     ClusterInUseProtection's fresh list narrows the window to the write
//     latency but cannot close it;
//   - a writer with direct etcd access is not governed by admission at all.
//
// Users cannot drop or forge references through the API: ClusterInUseProtection
// keeps the annotation as stored on every Cluster write but fedmesh's own.
//
// A finalizer on Cluster would close the window too, but a controller must
// remove it, after waiting out every policy write admitted before the
// deletion started: deletes would hang for the request timeout, and a
// Cluster would outlive its deletion whenever the controller is down.

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PendingAnnotation on a Cluster lists the policy writes admitted with the
// Cluster as a new target that may not be stored yet. fedmesh-apiserver owns
// it: it is kept as stored on every write of a Cluster but its own.
const PendingAnnotation = "admission.flomesh.io/pending-policy-references"

// ExpiryMargin is added to a request's deadline to give the expiry of its
// pending references: room for an etcd write started just before the
// deadline to commit, and for the clocks of API server replicas to differ.
const ExpiryMargin = 30 * time.Second

// DefaultRequestTimeout is assumed for a request without a deadline.
const DefaultRequestTimeout = time.Minute

// Pending is one admitted policy write naming a Cluster.
type Pending struct {
	// Policy is namespace/name of the policy.
	Policy string `json:"policy"`
	// UID of the policy written.
	UID types.UID `json:"uid"`
	// ResourceVersion is the stored version the write replaces; empty for a
	// create.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Expires is when the write can no longer be stored.
	Expires metav1.Time `json:"expires"`
}

// PolicyState is what a fresh read shows of a stored policy.
type PolicyState struct {
	UID             types.UID
	ResourceVersion string
}

// Expiry returns when a write admitted in a request with that deadline can
// no longer be stored.
func Expiry(now time.Time, deadline time.Time, hasDeadline bool) time.Time {
	if !hasDeadline {
		deadline = now.Add(DefaultRequestTimeout)
	}
	return deadline.Add(ExpiryMargin)
}

// Unsettled reports whether the write p may still be stored, given the
// policies a fresh read (made after p was recorded) shows, by namespace/name.
func (p Pending) Unsettled(now time.Time, stored map[string]PolicyState) bool {
	if !now.Before(p.Expires.Time) {
		return false
	}
	cur, ok := stored[p.Policy]
	switch {
	case !ok:
		// A create that is not stored yet, or failed. An update of a policy
		// that is gone fails.
		return p.ResourceVersion == ""
	case p.ResourceVersion == "":
		// Stored, or doomed to AlreadyExists.
		return false
	case cur.UID != p.UID:
		// Deleted and created again: the update's conditional write fails.
		return false
	default:
		// Still the version the update replaces: not written yet.
		return cur.ResourceVersion == p.ResourceVersion
	}
}

// Decode returns the pending references of a Cluster's annotations. An
// annotation that does not parse holds nothing: only fedmesh writes it.
func Decode(annotations map[string]string) []Pending {
	v, ok := annotations[PendingAnnotation]
	if !ok || v == "" {
		return nil
	}
	var ps []Pending
	if err := json.Unmarshal([]byte(v), &ps); err != nil {
		return nil
	}
	return ps
}

// Encode returns the annotation value of ps; empty for none.
func Encode(ps []Pending) string {
	if len(ps) == 0 {
		return ""
	}
	b, err := json.Marshal(ps)
	if err != nil {
		// Pending holds only strings and a time.
		panic(err)
	}
	return string(b)
}

// Add returns ps with p recorded and the expired references dropped. It
// keeps one reference per policy UID, the one based on the newest version:
// a write based on an older version than another admitted one has been
// stored already, or will fail its conditional write.
func Add(ps []Pending, p Pending, now time.Time) []Pending {
	out := make([]Pending, 0, len(ps)+1)
	keep := p
	for _, q := range ps {
		if !now.Before(q.Expires.Time) {
			continue
		}
		if q.UID != p.UID {
			out = append(out, q)
			continue
		}
		switch qv, pv := version(q.ResourceVersion), version(keep.ResourceVersion); {
		case qv > pv:
			keep = q
		case qv == pv && q.Expires.After(keep.Expires.Time):
			keep.Expires = q.Expires
		}
	}
	out = append(out, keep)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Policy != out[j].Policy {
			return out[i].Policy < out[j].Policy
		}
		return out[i].UID < out[j].UID
	})
	return out
}

// Remove returns ps without the references drop matches and without the
// expired ones.
func Remove(ps []Pending, now time.Time, drop func(Pending) bool) []Pending {
	var out []Pending
	for _, q := range ps {
		if now.Before(q.Expires.Time) && !drop(q) {
			out = append(out, q)
		}
	}
	return out
}

// version orders resourceVersions, which etcd makes decimal revisions; an
// empty one (a create) comes first.
func version(rv string) uint64 {
	v, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// Patch returns a JSON merge patch that sets the pending references of a
// Cluster, conditional on its resourceVersion: the server answers Conflict
// if the Cluster changed since it was read.
func Patch(resourceVersion string, ps []Pending) []byte {
	var value interface{}
	if v := Encode(ps); v != "" {
		value = v
	}
	b, err := json.Marshal(map[string]interface{}{
		"metadata": map[string]interface{}{
			"resourceVersion": resourceVersion,
			"annotations":     map[string]interface{}{PendingAnnotation: value},
		},
	})
	if err != nil {
		panic(err)
	}
	return b
}
