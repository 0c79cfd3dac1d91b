#!/usr/bin/env bash
# Runs fedmesh-apiserver on its own, with an embedded etcd and a throwaway
# CA, for trying the API without a control-plane cluster. Writes a
# kubeconfig for kubectl and serves until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
W="${ROOT}/_output/standalone"
PORT="${PORT:-8443}"
mkdir -p "${W}"
cd "${W}"

(cd "${ROOT}" && go run ./hack/local-up -write-certs "${W}/pki")
kubectl config --kubeconfig=kubeconfig set-cluster fedmesh --server="https://127.0.0.1:${PORT}" \
  --certificate-authority=pki/ca.crt --embed-certs=true >/dev/null
kubectl config --kubeconfig=kubeconfig set-credentials admin --client-certificate=pki/admin.crt \
  --client-key=pki/admin.key --embed-certs=true >/dev/null
kubectl config --kubeconfig=kubeconfig set-context fedmesh --cluster=fedmesh --user=admin >/dev/null
kubectl config --kubeconfig=kubeconfig use-context fedmesh >/dev/null
echo "kubeconfig: ${W}/kubeconfig   (try: kubectl --kubeconfig ${W}/kubeconfig api-resources --api-group=flomesh.io)"
exec "${ROOT}/_output/bin/fedmesh-apiserver" --standalone --bind-address=127.0.0.1 --secure-port="${PORT}" \
  --client-ca-file=pki/ca.crt --tls-cert-file=pki/serving.crt --tls-private-key-file=pki/serving.key \
  --data-dir=etcd
