#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for FUZZ_TIME each (5s by
# default). go test -fuzz takes one target of one package at a time, so the
# targets are found in the tracked *_test.go files (func FuzzX(f *testing.F))
# and run one by one. The seed corpus of each target (its f.Add calls and
# testdata/fuzz/FuzzX/) runs in every plain `go test` as well; this adds
# FUZZ_TIME of new inputs. A failure writes the input that failed into the
# package's testdata/fuzz/FuzzX/, where it belongs, with the fix.
set -o errexit
set -o nounset
set -o pipefail

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${SCRIPT_ROOT}"

FUZZ_TIME="${FUZZ_TIME:-5s}"
# Fuzzing itself needs no network; a test binary must finish, whatever it
# finds, well within this.
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-5m}"

# fuzz DIR TARGET runs one target; its output goes to stdout and to the
# file LOG.
fuzz() {
  go test -run='^$' -fuzz="^$2\$" -fuzztime="${FUZZ_TIME}" -timeout="${FUZZ_TIMEOUT}" "$1" 2>&1 | tee "${LOG}"
}

# coordinator_deadline tells whether the run in LOG failed only because Go's
# fuzzing coordinator (go1.26) let its own -fuzztime deadline through as a
# failure of the target (go.dev/issue/75804, fixed in go1.27): the target's
# failure is the bare "context deadline exceeded", and no failing input was
# written.
coordinator_deadline() {
  grep -A1 -- "^--- FAIL: $1 " "${LOG}" | grep -qx '    context deadline exceeded' &&
    ! grep -q 'Failing input written' "${LOG}"
}

LOG="$(mktemp)"
trap 'rm -f "${LOG}"' EXIT
start=${SECONDS}
count=0
while IFS= read -r file; do
  dir="./$(dirname "${file}")"
  while IFS= read -r target; do
    echo "fuzz: ${dir} ${target} for ${FUZZ_TIME}"
    # A run that failed only by the coordinator's deadline runs again, up
    # to twice: its parent context reports the deadline before its child
    # does, which on a loaded machine happens to one run in a few. Any
    # other failure fails at once.
    runs=1
    until fuzz "${dir}" "${target}"; do
      coordinator_deadline "${target}" && ((runs < 3)) || exit 1
      echo "fuzz: ${target}: the fuzzing coordinator reported its own deadline (go.dev/issue/75804), no failing input; running it again"
      runs=$((runs + 1))
    done
    count=$((count + 1))
  done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "${file}")
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | sort)
echo "fuzz: ${count} targets in $((SECONDS - start))s"
