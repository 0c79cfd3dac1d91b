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

start=${SECONDS}
count=0
while IFS= read -r file; do
  dir="./$(dirname "${file}")"
  while IFS= read -r target; do
    echo "fuzz: ${dir} ${target} for ${FUZZ_TIME}"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="${FUZZ_TIME}" -timeout="${FUZZ_TIMEOUT}" "${dir}"
    count=$((count + 1))
  done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "${file}")
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | sort)
echo "fuzz: ${count} targets in $((SECONDS - start))s"
