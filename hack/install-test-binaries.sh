#!/usr/bin/env bash

# Copyright The fedmesh Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# This script builds the upstream binaries that the integration and e2e tests
# run against (kube-apiserver, kube-controller-manager, kubectl and etcd) from source, at the versions
# pinned in hack/tools/go.mod, and installs them into _output/bin.
#
# The sources come from the Go module proxy, so no release tarballs or
# container images are needed. A cold build takes several minutes on a small
# machine; afterwards the script is a no-op until the pinned versions, the Go
# toolchain or the build flags change. Delete the stamp file
# (_output/bin/.versions) to force a rebuild.
#
# Usage:
#   hack/install-test-binaries.sh
#
# Environment:
#   OUTPUT_BIN  directory to install the binaries into
#               (default: <repo root>/_output/bin; a relative path is taken
#               relative to the current directory)

set -euo pipefail

# Resolve OUTPUT_BIN before changing directory, so that a relative path means
# what the caller expects.
if [[ -n "${OUTPUT_BIN:-}" && "${OUTPUT_BIN}" != /* ]]; then
  OUTPUT_BIN="${PWD}/${OUTPUT_BIN}"
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${REPO_ROOT}"

TOOLS_DIR="${REPO_ROOT}/hack/tools"
TOOLS_GOMOD="${TOOLS_DIR}/go.mod"
OUTPUT_BIN="${OUTPUT_BIN:-${REPO_ROOT}/_output/bin}"
STAMP_FILE="${OUTPUT_BIN}/.versions"

# The pinned versions live in hack/tools/go.mod only; read them from there.
KUBE_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "${TOOLS_GOMOD}")"
ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2; exit }' "${TOOLS_GOMOD}")"
if [[ -z "${KUBE_VERSION}" || -z "${ETCD_VERSION}" ]]; then
  echo "!!! could not read the k8s.io/kubernetes and go.etcd.io/etcd/server/v3 versions from ${TOOLS_GOMOD}" >&2
  exit 1
fi

# Static build settings. They are recorded in the stamp file, so changing any
# of them triggers a rebuild. The Kubernetes build tags and the stripping of
# symbols match what upstream's hack/lib/golang.sh uses for release builds.
export CGO_ENABLED=0
KUBE_BUILD_TAGS="selinux,notest,grpcnotrace"
GO_BUILD_FLAGS=(-mod=readonly -trimpath)
GO_STRIP_LDFLAGS="-s -w"

# Ignore any go.work in a parent directory: hack/tools is built on its own.
export GOWORK=off

# Print a duration in seconds as e.g. 3m07s.
format_duration() {
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# The stamp file identifies exactly what the installed binaries were built
# from: pinned versions, a hash of hack/tools/go.mod, the Go toolchain and the
# build settings.
desired_stamp() {
  local gomod_hash go_env
  gomod_hash="$(sha256sum "${TOOLS_GOMOD}" | awk '{ print $1 }')"
  go_env="$(go env GOVERSION GOOS GOARCH | paste -sd ' ' -)"
  cat <<EOF
kube-apiserver ${KUBE_VERSION}
kube-controller-manager ${KUBE_VERSION}
kubectl ${KUBE_VERSION}
etcd ${ETCD_VERSION}
hack/tools/go.mod sha256:${gomod_hash}
go ${go_env}
flags CGO_ENABLED=${CGO_ENABLED} ${GO_BUILD_FLAGS[*]} -tags=${KUBE_BUILD_TAGS} -ldflags=${GO_STRIP_LDFLAGS}
EOF
}

# Succeeds if the stamp matches and every binary is in place.
up_to_date() {
  local bin
  for bin in kube-apiserver kube-controller-manager kubectl etcd; do
    [[ -x "${OUTPUT_BIN}/${bin}" ]] || return 1
  done
  [[ -f "${STAMP_FILE}" ]] || return 1
  [[ "$(cat "${STAMP_FILE}")" == "${DESIRED_STAMP}" ]]
}

DESIRED_STAMP="$(desired_stamp)"
if up_to_date; then
  echo "test binaries up to date (kube-apiserver/kube-controller-manager/kubectl ${KUBE_VERSION}, etcd ${ETCD_VERSION} in ${OUTPUT_BIN})"
  exit 0
fi

mkdir -p "${OUTPUT_BIN}"

# Serialize concurrent runs (e.g. several test jobs starting at once), then
# check again: another run may have just finished the same build.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${OUTPUT_BIN}/.install.lock"
  if ! flock -n 9; then
    echo "waiting for another run of $(basename "$0") to finish..."
    flock 9
  fi
  if up_to_date; then
    echo "test binaries up to date (kube-apiserver/kube-controller-manager/kubectl ${KUBE_VERSION}, etcd ${ETCD_VERSION} in ${OUTPUT_BIN})"
    exit 0
  fi
fi

# Every k8s.io staging module must be replaced with the release that matches
# k8s.io/kubernetes (v1.X.Y ships them as v0.X.Y); a mismatch would build a
# binary that is neither version.
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
mismatched="$(awk -v want="${STAGING_VERSION}" \
  '$2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print "  " $0 }' "${TOOLS_GOMOD}")"
if [[ -n "${mismatched}" ]]; then
  echo "!!! ${TOOLS_GOMOD}: these replaces do not match k8s.io/kubernetes ${KUBE_VERSION} (want ${STAGING_VERSION}):" >&2
  echo "${mismatched}" >&2
  exit 1
fi

# Version information for the Kubernetes binaries, stamped the same way as
# upstream's hack/lib/version.sh does. The module proxy does not expose the git
# commit, so gitCommit and gitTreeState are left unset, as upstream does when
# it has no commit. The build date is the release time recorded by the module
# proxy, which keeps the binaries reproducible.
kube_major="${KUBE_VERSION#v}"
kube_major="${kube_major%%.*}"
kube_minor="${KUBE_VERSION#v*.}"
kube_minor="${kube_minor%%.*}"
# `go list -m` reads the module's metadata from the module cache, which may
# be empty: download it first (the build below needs its source anyway).
(cd "${TOOLS_DIR}" && go mod download k8s.io/kubernetes go.etcd.io/etcd/server/v3)
kube_build_date="$(cd "${TOOLS_DIR}" && go list -mod=readonly -m \
  -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
kube_build_date="${kube_build_date:-$(date -u +'%Y-%m-%dT%H:%M:%SZ')}"

kube_ldflags=("${GO_STRIP_LDFLAGS}")
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=(
    "-X ${pkg}.gitVersion=${KUBE_VERSION}"
    "-X ${pkg}.gitMajor=${kube_major}"
    "-X ${pkg}.gitMinor=${kube_minor}"
    "-X ${pkg}.buildDate=${kube_build_date}"
  )
done

# Binaries are built under a temporary name next to their final path and then
# renamed, so an interrupted build never leaves a broken binary behind.
tmp_files=()
cleanup() {
  if [[ ${#tmp_files[@]} -gt 0 ]]; then
    rm -f "${tmp_files[@]}"
  fi
}
trap cleanup EXIT

# build_binary STEP NAME VERSION EXPECT PACKAGE VERSION_CMD [GO BUILD ARGS...]
#
# Builds PACKAGE into OUTPUT_BIN/NAME, after checking that running it with
# VERSION_CMD (a space-separated argument list) prints EXPECT.
build_binary() {
  local step=$1 name=$2 version=$3 expect=$4 pkg=$5 version_cmd=$6
  shift 6

  local tmp="${OUTPUT_BIN}/.${name}.tmp.$$"
  tmp_files+=("${tmp}")

  # The first build compiles most of the shared dependencies; the later ones
  # reuse them from the Go build cache.
  local hint=""
  if [[ "${step}" == 1 ]]; then
    hint=" (cold build takes several minutes)"
  fi
  echo "[${step}/4] building ${name} ${version}${hint}..."
  local start=${SECONDS}
  (cd "${TOOLS_DIR}" && go build "${GO_BUILD_FLAGS[@]}" "$@" -o "${tmp}" "${pkg}")

  local out
  # shellcheck disable=SC2086 # version_cmd is a list of arguments
  if ! out="$("${tmp}" ${version_cmd} 2>&1)" || [[ "${out}" != *"${expect}"* ]]; then
    echo "!!! ${name} ${version_cmd} did not report ${expect}:" >&2
    echo "${out}" >&2
    exit 1
  fi

  mv -f "${tmp}" "${OUTPUT_BIN}/${name}"
  echo "      ${name} done in $(format_duration $((SECONDS - start))) -> ${OUTPUT_BIN}/${name}"
}

# Drop the stamp first: if this run is interrupted, the next one rebuilds.
rm -f "${STAMP_FILE}"

total_start=${SECONDS}

build_binary 1 kube-apiserver "${KUBE_VERSION}" "Kubernetes ${KUBE_VERSION}" \
  k8s.io/kubernetes/cmd/kube-apiserver "--version" \
  -tags="${KUBE_BUILD_TAGS}" -ldflags="${kube_ldflags[*]}"

build_binary 2 kube-controller-manager "${KUBE_VERSION}" "Kubernetes ${KUBE_VERSION}" \
  k8s.io/kubernetes/cmd/kube-controller-manager "--version" \
  -tags="${KUBE_BUILD_TAGS}" -ldflags="${kube_ldflags[*]}"

build_binary 3 kubectl "${KUBE_VERSION}" "Client Version: ${KUBE_VERSION}" \
  k8s.io/kubernetes/cmd/kubectl "version --client" \
  -tags="${KUBE_BUILD_TAGS}" -ldflags="${kube_ldflags[*]}"

# etcd takes its version from go.etcd.io/etcd/api/v3/version, so it needs no
# stamping.
build_binary 4 etcd "${ETCD_VERSION}" "etcd Version: ${ETCD_VERSION#v}" \
  go.etcd.io/etcd/server/v3 "--version" \
  -ldflags="${GO_STRIP_LDFLAGS}"

tmp_files+=("${STAMP_FILE}.tmp.$$")
echo "${DESIRED_STAMP}" > "${STAMP_FILE}.tmp.$$"
mv -f "${STAMP_FILE}.tmp.$$" "${STAMP_FILE}"

echo "test binaries installed in ${OUTPUT_BIN} in $(format_duration $((SECONDS - total_start)))"
