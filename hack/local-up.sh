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

# This script brings up the demo federation of the Flomesh multi-cluster
# walkthrough on this machine, on 127.0.0.1 and without containers:
#
#   - one etcd, shared by every server through distinct key prefixes;
#   - a control-plane kube-apiserver, with the aggregation layer configured;
#   - three member kube-apiservers, cluster-1, cluster-2 and cluster-3;
#   - a kube-controller-manager beside each kube-apiserver, with its default
#     controllers: namespaces finish deleting, every namespace gets its
#     default ServiceAccount, and the view/edit/admin ClusterRoles aggregate
#     the rules of the roles labelled for them (fedmesh:view, fedmesh:edit);
#   - fedmesh-apiserver, registered on the control plane with the manifests
#     in artifacts/deploy/ and running as its ServiceAccount, so the RBAC
#     rules shipped there are exercised with the server's real identity;
#   - fedmesh-syncer, also as its own ServiceAccount, which writes the
#     federation's ServiceImports, policies, Ingresses and export conditions
#     into the members;
#   - a Cluster object on the control plane for every member.
#
# Once everything is up it prints "fedmesh is ready" and the commands to try,
# then stays in the foreground. Ctrl-C (SIGINT) or SIGTERM stops everything it
# started. If any of the servers dies, the script says which one and where its
# log is, stops the others and exits non-zero.
#
# There is no kubelet or scheduler: the controller manager makes the
# ReplicaSets and Pods of the Deployments of artifacts/deploy/, but the Pods
# stay Pending and never run.
#
# Usage:
#   make local-up                 # builds what is needed, then runs this script
#   hack/local-up.sh
#
# Prerequisites (checked on start):
#   _output/bin/{etcd,kube-apiserver,kube-controller-manager,kubectl}
#                                              from hack/install-test-binaries.sh
#   _output/bin/fedmesh-apiserver, fedmesh-syncer  from make build
#   go                                         to generate the certificates
#
# Everything is written to _output/local-up/, which is wiped on every start:
#   pki/                    CA, serving and client certificates (hack/gencerts)
#   etcd/                   etcd's data
#   logs/<server>.log       one log per server (kube-controller-manager-<cluster>.log
#                           for the controller managers)
#   <cluster>.kubeconfig    admin kubeconfigs of control-plane and cluster-1..3
#   fedmesh-apiserver.kubeconfig, fedmesh-syncer.kubeconfig
#                           the ServiceAccount tokens the two run with
#   local-up.pid            the lock: pid of the running script
#
# Environment (all servers listen on 127.0.0.1 only):
#   ETCD_PORT           etcd client port            (default 32379)
#   ETCD_PEER_PORT      etcd peer port              (default 32380)
#   CONTROL_PLANE_PORT  control-plane kube-apiserver (default 36443)
#   CLUSTER_1_PORT      cluster-1 kube-apiserver    (default 36444)
#   CLUSTER_2_PORT      cluster-2 kube-apiserver    (default 36445)
#   CLUSTER_3_PORT      cluster-3 kube-apiserver    (default 36446)
#   FEDMESH_PORT        fedmesh-apiserver           (default 38443)
#   SYNCER_PORT         fedmesh-syncer's HTTPS /healthz and /metrics (default 38444)
#   READY_TIMEOUT       seconds to wait for each server to become ready
#                       (default 90)

set -euo pipefail

# A shell without job control starts background commands with SIGINT ignored
# (e.g. "hack/local-up.sh &" from another script), and bash cannot trap a
# signal that was ignored when it started. Start over with SIGINT restored, so
# that SIGINT stops everything whichever way the script was launched.
if [[ "$(trap -p INT)" == "trap -- '' SIGINT" ]] && env --default-signal=INT true 2>/dev/null; then
  exec env --default-signal=INT "${BASH}" "${BASH_SOURCE[0]}" "$@"
fi

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 3))); then
  echo "!!! $(basename "$0") needs bash 4.3 or newer (this is ${BASH_VERSION})" >&2
  exit 1
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${REPO_ROOT}"

BIN_DIR="${REPO_ROOT}/_output/bin"
WORK_DIR="${REPO_ROOT}/_output/local-up"
PKI_DIR="${WORK_DIR}/pki"
LOG_DIR="${WORK_DIR}/logs"
LOCK_FILE="${WORK_DIR}/local-up.pid"
KUBECTL="${BIN_DIR}/kubectl"

ETCD_PORT="${ETCD_PORT:-32379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-32380}"
CONTROL_PLANE_PORT="${CONTROL_PLANE_PORT:-36443}"
CLUSTER_1_PORT="${CLUSTER_1_PORT:-36444}"
CLUSTER_2_PORT="${CLUSTER_2_PORT:-36445}"
CLUSTER_3_PORT="${CLUSTER_3_PORT:-36446}"
FEDMESH_PORT="${FEDMESH_PORT:-38443}"
SYNCER_PORT="${SYNCER_PORT:-38444}"
READY_TIMEOUT="${READY_TIMEOUT:-90}"

ETCD_URL="http://127.0.0.1:${ETCD_PORT}"

# The kube-apiservers, in start order, and their ports. The members are the
# clusters of the walkthrough; their Cluster objects get gateway ports 81..83.
CLUSTERS=(control-plane cluster-1 cluster-2 cluster-3)
MEMBERS=(cluster-1 cluster-2 cluster-3)
declare -A PORTS=(
  [control-plane]="${CONTROL_PLANE_PORT}"
  [cluster-1]="${CLUSTER_1_PORT}"
  [cluster-2]="${CLUSTER_2_PORT}"
  [cluster-3]="${CLUSTER_3_PORT}"
)
declare -A GATEWAY_PORTS=([cluster-1]=81 [cluster-2]=82 [cluster-3]=83)

# What fedmesh-apiserver is registered as, in artifacts/deploy/.
FEDMESH_NAMESPACE=fedmesh
FEDMESH_SERVICE=fedmesh-apiserver
FEDMESH_SERVICE_ACCOUNT=fedmesh-apiserver
SYNCER_SERVICE_ACCOUNT=fedmesh-syncer
FEDMESH_APISERVICE=v1alpha1.flomesh.io

# The processes this script started: name -> pid, and names in start order.
declare -A PIDS=()
STARTED=()
# Set once the lock is held; until then there is nothing of ours to clean up.
LOCKED=false
# Set once the preflight checks passed and the servers are being started.
STARTING=false
READY=false
CLEANED_UP=false

# --- output helpers -----------------------------------------------------------

# Microseconds since the epoch. EPOCHREALTIME is "seconds.micros" (with the
# locale's decimal separator); older shells fall back to whole seconds.
now_us() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    local t="${EPOCHREALTIME/[.,]/}"
    echo "$((10#${t}))"
  else
    echo "$(($(date +%s) * 1000000))"
  fi
}

START_US="$(now_us)"

# Seconds since the script started, e.g. "4.2s".
elapsed() {
  local d=$(($(now_us) - START_US))
  printf '%d.%ds' $((d / 1000000)) $((d / 100000 % 10))
}

# Prints a progress line prefixed with the elapsed time.
log() {
  printf '[%6s] %s\n' "$(elapsed)" "$*"
}

# Prints an error and exits; the EXIT trap stops whatever was started.
die() {
  echo "!!! $*" >&2
  exit 1
}

# Prints the last lines of a server's log, to make failures self-explanatory.
show_log_tail() {
  local name=$1
  echo "--- last lines of ${LOG_DIR}/${name}.log:" >&2
  tail -n 20 "${LOG_DIR}/${name}.log" >&2 || true
  echo "---" >&2
}

# --- preflight ----------------------------------------------------------------

check_binaries() {
  local bin missing=()
  for bin in etcd kube-apiserver kube-controller-manager kubectl fedmesh-apiserver fedmesh-syncer kubectl-fedmesh; do
    [[ -x "${BIN_DIR}/${bin}" ]] || missing+=("${bin}")
  done
  if ((${#missing[@]} > 0)); then
    {
      echo "!!! missing in ${BIN_DIR}: ${missing[*]}"
      echo "    etcd, kube-apiserver, kube-controller-manager and kubectl: run hack/install-test-binaries.sh (or make test-binaries)"
      echo "    fedmesh-apiserver, fedmesh-syncer, kubectl-fedmesh: run make build"
      echo "    or simply run make local-up, which does both before starting this script."
    } >&2
    exit 1
  fi
  command -v go >/dev/null 2>&1 || die "go is needed to generate the certificates (go run ./hack/gencerts)"
}

# Takes the lock that makes a second local-up refuse to start. With flock(1)
# the lock is held on the open file for the life of this script, so it goes
# away with the script however it ends; without flock, the pid in the file is
# checked instead (a stale file of a dead script is simply taken over).
acquire_lock() {
  mkdir -p "${WORK_DIR}"
  # Open without truncating: the pid of a running holder must stay readable.
  exec 9<>"${LOCK_FILE}"
  local holder
  holder="$(head -n 1 "${LOCK_FILE}" 2>/dev/null || true)"
  if command -v flock >/dev/null 2>&1; then
    if ! flock -n 9; then
      die "another local-up is already running (pid ${holder:-unknown}, lock ${LOCK_FILE}); stop it with Ctrl-C or: kill ${holder:-<pid>}"
    fi
  elif [[ "${holder}" =~ ^[0-9]+$ && "${holder}" != "$$" ]] && kill -0 "${holder}" 2>/dev/null; then
    # Guard against pid reuse where /proc tells us what the process is.
    if [[ ! -r "/proc/${holder}/cmdline" ]] || tr '\0' ' ' <"/proc/${holder}/cmdline" | grep -q local-up; then
      die "another local-up is already running (pid ${holder}, lock ${LOCK_FILE}); stop it with Ctrl-C or: kill ${holder}"
    fi
  fi
  echo "$$" >"${LOCK_FILE}"
  LOCKED=true
}

# Succeeds if something accepts connections on 127.0.0.1:PORT. Uses bash's
# /dev/tcp, since ss, netstat and lsof may all be missing on a clean machine.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_ports() {
  local name port busy=()
  local -a checks=(
    "etcd:${ETCD_PORT}:ETCD_PORT"
    "etcd peer:${ETCD_PEER_PORT}:ETCD_PEER_PORT"
    "control-plane:${CONTROL_PLANE_PORT}:CONTROL_PLANE_PORT"
    "cluster-1:${CLUSTER_1_PORT}:CLUSTER_1_PORT"
    "cluster-2:${CLUSTER_2_PORT}:CLUSTER_2_PORT"
    "cluster-3:${CLUSTER_3_PORT}:CLUSTER_3_PORT"
    "fedmesh-apiserver:${FEDMESH_PORT}:FEDMESH_PORT"
    "fedmesh-syncer:${SYNCER_PORT}:SYNCER_PORT"
  )
  local check var
  for check in "${checks[@]}"; do
    IFS=: read -r name port var <<<"${check}"
    [[ "${port}" =~ ^[0-9]+$ ]] || die "${var}=${port} is not a port number"
    if port_in_use "${port}"; then
      busy+=("    127.0.0.1:${port} (${name}; set ${var} to use another port)")
    fi
  done
  if ((${#busy[@]} > 0)); then
    {
      echo "!!! cannot start: these ports are already in use:"
      printf '%s\n' "${busy[@]}"
    } >&2
    exit 1
  fi
}

# --- processes ----------------------------------------------------------------

# start NAME COMMAND [ARGS...]
#
# Runs COMMAND in the background with its output in logs/NAME.log, and
# remembers it so that it is stopped on exit. The lock's file descriptor is
# not passed on, so the lock never outlives this script.
start() {
  local name=$1
  shift
  "$@" </dev/null >"${LOG_DIR}/${name}.log" 2>&1 9>&- &
  PIDS[${name}]=$!
  STARTED+=("${name}")
}

# Succeeds while the process started as NAME runs.
alive() {
  kill -0 "${PIDS[$1]}" 2>/dev/null
}

# Fails with the log of NAME if it is no longer running.
ensure_alive() {
  local name=$1
  if ! alive "${name}"; then
    local rc=0
    wait "${PIDS[${name}]}" 2>/dev/null || rc=$?
    show_log_tail "${name}"
    die "${name} exited (status ${rc}) during startup; see ${LOG_DIR}/${name}.log"
  fi
}

# Stops everything this script started, and releases the lock. Runs on every
# exit: a normal stop, a failed startup, or a server that died.
#
# kube-apiserver drains for up to a minute on SIGTERM, and nothing here needs
# a graceful shutdown, so the kube-apiservers and the controller managers get
# SIGKILL. etcd,
# fedmesh-apiserver and fedmesh-syncer stop quickly on SIGTERM; they get a
# few seconds before they are killed too.
cleanup() {
  if [[ "${CLEANED_UP}" == true ]]; then
    return
  fi
  CLEANED_UP=true
  [[ "${LOCKED}" == true ]] || return 0

  local name pid graceful=()
  if ((${#STARTED[@]} > 0)); then
    echo "stopping: ${STARTED[*]}"
    # bash reports every job that it reaps after a SIGKILL ("Killed ...");
    # those are expected here, so the shell's stderr is muted until the end.
    exec 8>&2 2>/dev/null
    for name in "${STARTED[@]}"; do
      pid="${PIDS[${name}]}"
      case "${name}" in
        etcd | fedmesh-apiserver | fedmesh-syncer)
          kill -TERM "${pid}" 2>/dev/null && graceful+=("${pid}") || true
          ;;
        *)
          kill -KILL "${pid}" 2>/dev/null || true
          ;;
      esac
    done
    # Up to 10 seconds for the graceful ones, then SIGKILL.
    local i
    for ((i = 0; i < 100; i++)); do
      local running=false
      for pid in "${graceful[@]+"${graceful[@]}"}"; do
        if kill -0 "${pid}" 2>/dev/null; then
          running=true
        fi
      done
      [[ "${running}" == true ]] || break
      sleep 0.1
    done
    for name in "${STARTED[@]}"; do
      pid="${PIDS[${name}]}"
      kill -KILL "${pid}" 2>/dev/null || true
      wait "${pid}" 2>/dev/null || true
    done
    exec 2>&8 8>&-
  fi
  rm -f "${LOCK_FILE}"
}

on_exit() {
  local rc=$?
  cleanup
  if [[ "${rc}" -ne 0 && "${STARTING}" == true && "${READY}" != true ]]; then
    echo "!!! local-up failed after $(elapsed); logs are in ${LOG_DIR}" >&2
  fi
  exit "${rc}"
}

on_signal() {
  trap - INT TERM HUP
  echo
  echo "$1 received"
  cleanup
  echo "local-up stopped"
  exit 0
}

# --- setup steps --------------------------------------------------------------

generate_certificates() {
  # gencerts writes ca.crt/ca.key, serving.crt/.key (SANs 127.0.0.1 and the
  # names below; the aggregator verifies fedmesh-apiserver as
  # <service>.<namespace>.svc), admin.crt/.key (O=system:masters),
  # front-proxy.crt/.key (CN=front-proxy-client) and sa.key. No openssl needed.
  go run ./hack/gencerts --dir "${PKI_DIR}" \
    --serving-dns "localhost,${FEDMESH_SERVICE}.${FEDMESH_NAMESPACE}.svc"
}

start_etcd() {
  start etcd "${BIN_DIR}/etcd" \
    --name=local-up \
    --data-dir="${WORK_DIR}/etcd" \
    --unsafe-no-fsync \
    --log-level=warn \
    --listen-client-urls="${ETCD_URL}" \
    --advertise-client-urls="${ETCD_URL}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="local-up=http://127.0.0.1:${ETCD_PEER_PORT}"
}

# Succeeds when etcd answers /health with health true. Plain HTTP over bash's
# /dev/tcp, as curl may be missing.
etcd_healthy() {
  local reply
  reply="$(
    { exec 3<>"/dev/tcp/127.0.0.1/${ETCD_PORT}"; } 2>/dev/null || exit 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3
  )" || return 1
  [[ "${reply}" == *'"health":"true"'* ]]
}

wait_for_etcd() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until etcd_healthy; do
    ensure_alive etcd
    if ((SECONDS >= deadline)); then
      show_log_tail etcd
      die "etcd not healthy after ${READY_TIMEOUT}s; see ${LOG_DIR}/etcd.log"
    fi
    sleep 0.1
  done
  log "etcd is healthy on ${ETCD_URL}"
}

# start_kube_apiserver NAME [EXTRA FLAGS...]
#
# The flags every kube-apiserver needs on loopback: an advertise address of
# 127.0.0.1 and no endpoint reconciler (the kubernetes Service's Endpoints
# reject loopback addresses), the service-account flags (token issuing and
# verification, with the shared sa.key), RBAC, a service range, the serving
# certificate, and the CA that client certificates are verified against.
# Each cluster keeps its objects under its own etcd prefix.
start_kube_apiserver() {
  local name=$1
  shift
  start "${name}" "${BIN_DIR}/kube-apiserver" \
    --bind-address=127.0.0.1 \
    --secure-port="${PORTS[${name}]}" \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --etcd-servers="${ETCD_URL}" \
    --etcd-prefix="/${name}" \
    --tls-cert-file="${PKI_DIR}/serving.crt" \
    --tls-private-key-file="${PKI_DIR}/serving.key" \
    --client-ca-file="${PKI_DIR}/ca.crt" \
    --service-account-issuer="https://${name}.local-up.fedmesh.invalid" \
    --service-account-key-file="${PKI_DIR}/sa.key" \
    --service-account-signing-key-file="${PKI_DIR}/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=RBAC \
    "$@"
}

start_kube_apiservers() {
  # The control plane hosts the aggregation layer. It proxies to
  # fedmesh-apiserver with the front-proxy client certificate and passes the
  # user in the X-Remote-* headers; fedmesh-apiserver trusts those headers
  # from certificates of the requestheader CA with the allowed name, which it
  # reads from kube-system/extension-apiserver-authentication. Without these
  # flags the aggregator gets 401/403. --enable-aggregator-routing stays off:
  # the aggregator then dials the ExternalName Service's name directly.
  start_kube_apiserver control-plane \
    --requestheader-client-ca-file="${PKI_DIR}/ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${PKI_DIR}/front-proxy.crt" \
    --proxy-client-key-file="${PKI_DIR}/front-proxy.key"
  local name
  for name in "${MEMBERS[@]}"; do
    start_kube_apiserver "${name}"
  done
  log "started kube-apiservers: control-plane :${CONTROL_PLANE_PORT}, cluster-1 :${CLUSTER_1_PORT}, cluster-2 :${CLUSTER_2_PORT}, cluster-3 :${CLUSTER_3_PORT}"
}

# write_admin_kubeconfig NAME
#
# An admin kubeconfig for the kube-apiserver NAME, with the CA and the admin
# client certificate (O=system:masters) embedded.
write_admin_kubeconfig() {
  local name=$1 kubeconfig="${WORK_DIR}/$1.kubeconfig"
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-cluster "${name}" \
    --server="https://127.0.0.1:${PORTS[${name}]}" \
    --certificate-authority="${PKI_DIR}/ca.crt" --embed-certs=true >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-credentials admin \
    --client-certificate="${PKI_DIR}/admin.crt" \
    --client-key="${PKI_DIR}/admin.key" --embed-certs=true >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-context "${name}" \
    --cluster="${name}" --user=admin >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" use-context "${name}" >/dev/null
}

# wait_for_kube_apiserver NAME
wait_for_kube_apiserver() {
  local name=$1 deadline=$((SECONDS + READY_TIMEOUT))
  until "${KUBECTL}" --kubeconfig="${WORK_DIR}/${name}.kubeconfig" --request-timeout=5s \
    get --raw /readyz >/dev/null 2>&1; do
    ensure_alive "${name}"
    if ((SECONDS >= deadline)); then
      show_log_tail "${name}"
      die "${name} kube-apiserver not ready after ${READY_TIMEOUT}s; see ${LOG_DIR}/${name}.log"
    fi
    sleep 0.2
  done
  log "${name} is ready on https://127.0.0.1:${PORTS[${name}]}"
}

# start_kube_controller_manager CLUSTER
#
# Runs the cluster's kube-controller-manager with its default controllers, as
# the cluster's admin (--use-service-account-credentials=false: one identity
# for every controller), without leader election (there is one replica) and
# without a serving port (nothing scrapes it; --secure-port=0 leaves no port
# to pick or to clash). It signs legacy ServiceAccount token Secrets with the
# clusters' sa.key and publishes the CA as kube-root-ca.crt in every
# namespace. The client QPS is raised from the default 20, so that the first
# sweep of a new cluster and each namespace deletion (a request per resource
# type) wait less on it. A deleted namespace still takes about 5 s to go: the
# namespace controller waits that long before it starts.
start_kube_controller_manager() {
  local name=$1
  start "kube-controller-manager-${name}" "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${WORK_DIR}/${name}.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --leader-elect=false \
    --cluster-name="${name}" \
    --service-account-private-key-file="${PKI_DIR}/sa.key" \
    --root-ca-file="${PKI_DIR}/ca.crt" \
    --use-service-account-credentials=false \
    --kube-api-qps=100 \
    --kube-api-burst=200
}

# Waits until every cluster's controller manager works: the ServiceAccount
# default of namespace default, which its serviceaccount controller creates,
# exists.
wait_for_kube_controller_managers() {
  local name deadline=$((SECONDS + READY_TIMEOUT))
  for name in "${CLUSTERS[@]}"; do
    until "${KUBECTL}" --kubeconfig="${WORK_DIR}/${name}.kubeconfig" --request-timeout=5s \
      -n default get serviceaccount default >/dev/null 2>&1; do
      ensure_alive "kube-controller-manager-${name}"
      if ((SECONDS >= deadline)); then
        show_log_tail "kube-controller-manager-${name}"
        die "the kube-controller-manager of ${name} made no default ServiceAccount within ${READY_TIMEOUT}s; see ${LOG_DIR}/kube-controller-manager-${name}.log"
      fi
      sleep 0.2
    done
  done
  log "kube-controller-managers of ${CLUSTERS[*]} are working"
}

# Applies artifacts/deploy/ to the control plane, then adapts the two objects
# that cannot work as shipped when fedmesh-apiserver is a local process:
#
#   - The Service selects the Deployment's pods, which never run here. It
#     becomes an ExternalName Service for 127.0.0.1: the aggregator resolves
#     an ExternalName Service to https://<externalName>:<APIService port>
#     (Endpoints and EndpointSlices reject loopback addresses, so a Service
#     with manual endpoints is not an option). Rather than rewriting the YAML
#     with sed (brittle) or replacing the Service with another one, the
#     shipped Service is applied and then patched: a JSON merge patch sets the
#     type and externalName and drops the selector; on a change of type to
#     ExternalName the API server itself clears the allocated cluster IPs.
#     The ports stay as shipped; an ExternalName Service ignores them.
#   - The APIService ships with an empty caBundle and the in-cluster port. It
#     gets the local CA (which signed the serving certificate, valid for
#     fedmesh-apiserver.fedmesh.svc) and the port fedmesh-apiserver listens on.
register_fedmesh() {
  local cp="${WORK_DIR}/control-plane.kubeconfig"
  "${KUBECTL}" --kubeconfig="${cp}" apply -f "${REPO_ROOT}/artifacts/deploy/" >/dev/null
  "${KUBECTL}" --kubeconfig="${cp}" -n "${FEDMESH_NAMESPACE}" patch service "${FEDMESH_SERVICE}" \
    --type=merge \
    -p '{"spec":{"type":"ExternalName","externalName":"127.0.0.1","selector":null}}' >/dev/null
  local ca_bundle
  ca_bundle="$(base64 <"${PKI_DIR}/ca.crt" | tr -d '\n')"
  "${KUBECTL}" --kubeconfig="${cp}" patch apiservice "${FEDMESH_APISERVICE}" --type=merge \
    -p "{\"spec\":{\"caBundle\":\"${ca_bundle}\",\"service\":{\"port\":${FEDMESH_PORT}}}}" >/dev/null
  log "applied artifacts/deploy/ to control-plane (Service ${FEDMESH_NAMESPACE}/${FEDMESH_SERVICE} -> ExternalName 127.0.0.1, APIService ${FEDMESH_APISERVICE} -> port ${FEDMESH_PORT})"
}

# write_service_account_kubeconfig SERVICE_ACCOUNT KUBECONFIG
#
# A kubeconfig of the control plane with a token, valid for 24 hours, of
# the ServiceAccount of the fedmesh namespace.
write_service_account_kubeconfig() {
  local sa=$1 kubeconfig=$2
  local cp="${WORK_DIR}/control-plane.kubeconfig"
  local token
  token="$("${KUBECTL}" --kubeconfig="${cp}" -n "${FEDMESH_NAMESPACE}" \
    create token "${sa}" --duration=24h)"
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-cluster control-plane \
    --server="https://127.0.0.1:${CONTROL_PLANE_PORT}" \
    --certificate-authority="${PKI_DIR}/ca.crt" --embed-certs=true >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-credentials "${sa}" \
    --token="${token}" >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" set-context "${sa}" \
    --cluster=control-plane --user="${sa}" >/dev/null
  "${KUBECTL}" config --kubeconfig="${kubeconfig}" use-context "${sa}" >/dev/null
}

# Runs fedmesh-apiserver as its ServiceAccount, the identity the Deployment's
# pods would have: a token from the TokenRequest API, in a kubeconfig that it
# uses for its own client, for delegated authentication (TokenReview, the
# requestheader configuration) and for delegated authorization
# (SubjectAccessReview). The token is valid for 24 hours.
start_fedmesh_apiserver() {
  local kubeconfig="${WORK_DIR}/fedmesh-apiserver.kubeconfig"
  write_service_account_kubeconfig "${FEDMESH_SERVICE_ACCOUNT}" "${kubeconfig}"

  start fedmesh-apiserver "${BIN_DIR}/fedmesh-apiserver" \
    --bind-address=127.0.0.1 \
    --secure-port="${FEDMESH_PORT}" \
    --etcd-servers="${ETCD_URL}" \
    --etcd-prefix=/fedmesh \
    --kubeconfig="${kubeconfig}" \
    --authentication-kubeconfig="${kubeconfig}" \
    --authorization-kubeconfig="${kubeconfig}" \
    --tls-cert-file="${PKI_DIR}/serving.crt" \
    --tls-private-key-file="${PKI_DIR}/serving.key"
  log "started fedmesh-apiserver on https://127.0.0.1:${FEDMESH_PORT} as system:serviceaccount:${FEDMESH_NAMESPACE}:${FEDMESH_SERVICE_ACCOUNT}"
}

# Waits until the aggregator reports the APIService Available, i.e. it reached
# fedmesh-apiserver and got its discovery document. kubectl wait runs in short
# rounds so that a fedmesh-apiserver that dies is noticed at once.
wait_for_apiservice() {
  local cp="${WORK_DIR}/control-plane.kubeconfig"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "${KUBECTL}" --kubeconfig="${cp}" wait --for=condition=Available --timeout=2s \
    "apiservice/${FEDMESH_APISERVICE}" >/dev/null 2>&1; do
    ensure_alive fedmesh-apiserver
    if ((SECONDS >= deadline)); then
      local why
      why="$("${KUBECTL}" --kubeconfig="${cp}" get apiservice "${FEDMESH_APISERVICE}" \
        -o jsonpath='{.status.conditions[?(@.type=="Available")].message}' 2>&1 || true)"
      show_log_tail fedmesh-apiserver
      die "APIService ${FEDMESH_APISERVICE} not Available after ${READY_TIMEOUT}s: ${why}"
    fi
  done
  log "APIService ${FEDMESH_APISERVICE} is Available"
}

# Runs fedmesh-syncer as its ServiceAccount, one replica, with leader
# election as the Deployment of artifacts/deploy/ runs it. It reads the
# federation through the APIService, so it starts once that is Available,
# and it waits until the replica holds the Lease. It serves /healthz and
# /metrics over HTTPS with the local serving certificate; /metrics only to
# whom the control plane authorizes, e.g. its admin:
#   curl --cacert pki/ca.crt --cert pki/admin.crt --key pki/admin.key \
#     https://127.0.0.1:${SYNCER_PORT}/metrics
start_fedmesh_syncer() {
  local kubeconfig="${WORK_DIR}/fedmesh-syncer.kubeconfig"
  write_service_account_kubeconfig "${SYNCER_SERVICE_ACCOUNT}" "${kubeconfig}"
  start fedmesh-syncer "${BIN_DIR}/fedmesh-syncer" \
    --kubeconfig="${kubeconfig}" \
    --bind-address=127.0.0.1 \
    --secure-port="${SYNCER_PORT}" \
    --tls-cert-file="${PKI_DIR}/serving.crt" \
    --tls-private-key-file="${PKI_DIR}/serving.key" \
    --leader-elect-namespace="${FEDMESH_NAMESPACE}" \
    --leader-elect-identity=local-up
  local cp="${WORK_DIR}/control-plane.kubeconfig"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until [[ "$("${KUBECTL}" --kubeconfig="${cp}" -n "${FEDMESH_NAMESPACE}" get lease fedmesh-syncer \
    -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)" == local-up ]]; do
    ensure_alive fedmesh-syncer
    if ((SECONDS >= deadline)); then
      show_log_tail fedmesh-syncer
      die "fedmesh-syncer did not take its Lease within ${READY_TIMEOUT}s; see ${LOG_DIR}/fedmesh-syncer.log"
    fi
    sleep 0.2
  done
  log "started fedmesh-syncer as system:serviceaccount:${FEDMESH_NAMESPACE}:${SYNCER_SERVICE_ACCOUNT}; it holds the Lease (metrics on https://127.0.0.1:${SYNCER_PORT}/metrics, for the admin's certificate)"
}

# Joins every member with kubectl fedmesh (cmd/kubectl-fedmesh, found by
# kubectl on the PATH): in the member, the ServiceAccount fedmesh-system/fedmesh
# and the ClusterRole fedmesh:member with exactly the permissions fedmesh needs
# there, the member CRDs (installed with the member's admin credentials) and the
# admission policies that confine fedmesh to its own objects; on the control
# plane, a Cluster whose credentials Secret holds only a token of that
# ServiceAccount. Each join waits until fedmesh reports the member Ready.
register_clusters() {
  local cp="${WORK_DIR}/control-plane.kubeconfig"
  local name
  for name in "${MEMBERS[@]}"; do
    PATH="${BIN_DIR}:${PATH}" "${KUBECTL}" fedmesh join "${name}" \
      --kubeconfig="${cp}" --member-kubeconfig="${WORK_DIR}/${name}.kubeconfig" \
      --gateway-host=127.0.0.1 --gateway-port="${GATEWAY_PORTS[${name}]}" \
      --wait --timeout=60s >/dev/null || die "kubectl fedmesh join ${name} failed"
  done
  log "joined ${MEMBERS[*]} with kubectl fedmesh"
}

print_instructions() {
  local rel="${WORK_DIR#"${PWD}/"}"
  cat <<EOF
fedmesh is ready

  export KUBECONFIG=${WORK_DIR}/control-plane.kubeconfig
  kubectl get clusters
  kubectl get apiservice ${FEDMESH_APISERVICE}
  kubectl api-resources --api-group=flomesh.io
  kubectl apply -n default -f - <<'YAML'
apiVersion: flomesh.io/v1alpha1
kind: GlobalTrafficPolicy
metadata:
  name: httpbin
spec:
  lbType: FailOver
  targets:
    - clusterKey: default/default/default/cluster-1
    - clusterKey: default/default/default/cluster-3
YAML
  kubectl get gtp -A

The members: kubectl --kubeconfig ${rel}/cluster-1.kubeconfig get namespaces (also cluster-2, cluster-3)
fedmesh-syncer writes into each member the ServiceImports of what the others export, the
policies, and the Ingresses of its own exports:
  kubectl --kubeconfig ${rel}/cluster-2.kubeconfig get serviceimports,gtp -A
Logs: ${rel}/logs/   Press Ctrl-C to stop everything.
EOF
}

# --- foreground ---------------------------------------------------------------

# Waits until a server exits (then fails, naming it) or a signal arrives (then
# on_signal stops everything).
supervise() {
  local name rc
  while true; do
    for name in "${STARTED[@]}"; do
      if ! alive "${name}"; then
        rc=0
        wait "${PIDS[${name}]}" 2>/dev/null || rc=$?
        echo "!!! ${name} (pid ${PIDS[${name}]}) exited with status ${rc}; see ${LOG_DIR}/${name}.log" >&2
        show_log_tail "${name}"
        exit 1
      fi
    done
    # Returns when any child exits, or when a trapped signal arrives.
    rc=0
    wait -n || rc=$?
    for name in "${STARTED[@]}"; do
      if ! alive "${name}"; then
        echo "!!! ${name} (pid ${PIDS[${name}]}) exited with status ${rc}; see ${LOG_DIR}/${name}.log" >&2
        show_log_tail "${name}"
        exit 1
      fi
    done
  done
}

# --- main ---------------------------------------------------------------------

check_binaries
acquire_lock
trap on_exit EXIT
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGHUP' HUP
check_ports

# Start fresh. The lock file stays: removing it while it is held would let a
# second run lock a new file of the same name.
shopt -s dotglob nullglob
for entry in "${WORK_DIR}"/*; do
  [[ "${entry}" == "${LOCK_FILE}" ]] || rm -rf "${entry}"
done
shopt -u dotglob nullglob
mkdir -p "${LOG_DIR}"
STARTING=true

log "generating certificates in ${PKI_DIR#"${REPO_ROOT}/"}"
generate_certificates
for cluster in "${CLUSTERS[@]}"; do
  write_admin_kubeconfig "${cluster}"
done

start_etcd
wait_for_etcd
start_kube_apiservers
wait_for_kube_apiserver control-plane
start_kube_controller_manager control-plane
register_fedmesh
start_fedmesh_apiserver
for cluster in "${MEMBERS[@]}"; do
  wait_for_kube_apiserver "${cluster}"
  start_kube_controller_manager "${cluster}"
done
wait_for_apiservice
wait_for_kube_controller_managers
start_fedmesh_syncer
register_clusters

READY=true
log "all up"
print_instructions
supervise
