#!/usr/bin/env bash
# Regenerates everything under generated/ and the zz_generated files of apis/:
# deepcopy, defaulters and conversions, OpenAPI definitions (with the model
# names server-side apply needs), and the clientset, listers, informers and
# apply configurations.
set -o errexit
set -o nounset
set -o pipefail

# Known API-rule violations (mostly of apimachinery's own types) are listed in
# hack/api-rules/violation_exceptions.list; a new one fails generation. Run with
# UPDATE_API_KNOWN_VIOLATIONS=true to accept a change deliberately.

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${SCRIPT_ROOT}"

CODEGEN_PKG="${CODEGEN_PKG:-$(go list -m -f '{{.Dir}}' k8s.io/code-generator)}"
# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

THIS_PKG="github.com/fedmesh/fedmesh"
BOILERPLATE="${SCRIPT_ROOT}/hack/boilerplate.go.txt"

kube::codegen::gen_helpers \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/apis"

kube::codegen::gen_openapi \
    --output-dir "${SCRIPT_ROOT}/generated/openapi" \
    --output-pkg "${THIS_PKG}/generated/openapi" \
    --output-model-name-file "zz_generated.model_name.go" \
    --report-filename "${SCRIPT_ROOT}/hack/api-rules/violation_exceptions.list" \
    ${UPDATE_API_KNOWN_VIOLATIONS:+--update-report} \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/apis"

kube::codegen::gen_client \
    --with-watch \
    --with-applyconfig \
    --applyconfig-openapi-schema <(go run ./hack/models-schema) \
    --output-dir "${SCRIPT_ROOT}/generated" \
    --output-pkg "${THIS_PKG}/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/apis"
