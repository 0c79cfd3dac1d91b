#!/usr/bin/env bash
# Fails when the generated code is stale: it regenerates into a scratch copy
# of the module and diffs apis/, generated/, the API-rule list and the
# member CRDs (artifacts/crds) against it.
set -o errexit
set -o nounset
set -o pipefail

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TMP="$(mktemp -d -t verify-codegen.XXXXXX)"
trap 'rm -rf "${TMP}"' EXIT

# Everything the generators read: sources, module files and the scripts.
tar -C "${SCRIPT_ROOT}" --exclude=./_output --exclude=./.git -cf - . | tar -C "${TMP}" -xf -
"${TMP}/hack/update-codegen.sh" >/dev/null

ret=0
for d in apis generated hack/api-rules artifacts/crds; do
  diff -Naupr "${SCRIPT_ROOT}/${d}" "${TMP}/${d}" || ret=1
done
if [[ ${ret} -eq 0 ]]; then
  echo "generated code up to date"
else
  echo "generated code is stale: run hack/update-codegen.sh" >&2
fi
exit ${ret}
