#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd, kube-apiserver (RBAC,
# admission, CEL, TokenRequest) and kube-controller-manager (garbage
# collection, namespaces, service accounts), plus kubectl and helm. The node
# (kubelet, kube-proxy, kube-scheduler, the workload controllers, containerd)
# is scripts/env/node.sh; its binaries are built here, from the same module.
# Everything is built from Go modules pinned by the wrapper modules under
# scripts/env/k8s/, because only package registries are reachable (no release
# tarballs, no images).
#
# Usage: scripts/env/k8s.sh install|start|stop|status|env
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"

# Pins. The module versions themselves live in k8s/{kube,etcd,helm}/go.mod;
# these must match them (they name the bin dir and feed the version ldflags).
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
HELM_K8S_MINOR=37 # k8s.io/client-go minor that helm v3.22.0 is built against


K8S_MODS=$HERE/k8s
K8S_BIN=$PARLEY_CACHE/k8s/$K8S_VERSION/bin
K8S_RUN=$PARLEY_RUN/k8s
K8S_PKI=$K8S_RUN/pki
KUBECONFIG_FILE=$K8S_RUN/kubeconfig
CONTEXT=parley-test
APISERVER_URL=https://127.0.0.1:$PARLEY_APISERVER_PORT
ETCD_URL=http://127.0.0.1:$PARLEY_ETCD_PORT
SA_ISSUER=https://kubernetes.default.svc.cluster.local
# Controllers that do useful work without a node: garbage collection of
# owned objects, namespace deletion, service accounts. The workload
# controllers (deployment, replicaset, endpointslice) run with the node
# (scripts/env/node.sh), so the tiers before it can play the kubelet's part
# and write a Deployment's status themselves.
KCM_CONTROLLERS=garbagecollector,namespace,serviceaccount,serviceaccount-token,clusterrole-aggregation,root-ca-cert-publisher

# ---------------------------------------------------------------- install --

# go_env: run the go tool with caches under PARLEY_CACHE so rebuilds are fast,
# static binaries, and no VCS stamping (the wrappers sit inside this repo).
go_env() {
  env GOMODCACHE="$PARLEY_CACHE/go/mod" GOCACHE="$PARLEY_CACHE/go/build" \
    GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 "$@"
}

# stamp_for NAME VERSION LDFLAGS: what a finished build of NAME records; a
# changed pin, ldflags, wrapper go.mod/go.sum or Go toolchain changes it and
# so forces a rebuild.
stamp_for() {
  local name=$1 version=$2 ldflags=$3
  printf '%s %s %s %s\n' "$name" "$version" "$(go env GOVERSION)" \
    "$({ echo "$ldflags"; cat "$K8S_MODS/$name/go.mod" "$K8S_MODS/$name/go.sum"; } | sha256sum | cut -c1-16)"
}

# up_to_date NAME VERSION LDFLAGS BINARY...: binaries exist, stamp matches.
up_to_date() {
  local name=$1 version=$2 ldflags=$3 b; shift 3
  for b in "$@"; do [[ -x $K8S_BIN/$b ]] || return 1; done
  [[ -f $K8S_BIN/.$name.stamp ]] &&
    [[ $(cat "$K8S_BIN/.$name.stamp") == "$(stamp_for "$name" "$version" "$ldflags")" ]]
}

# build NAME VERSION LDFLAGS OUTPUT PACKAGE...: go build PACKAGEs from wrapper
# module NAME (OUTPUT: a binary name for one package, "" to keep go's names)
# into a scratch dir, then move them into K8S_BIN and write the stamp, so an
# interrupted build never leaves a half-written binary that looks current.
build() {
  local name=$1 version=$2 ldflags=$3 output=$4; shift 4
  local out=$K8S_BIN/.build-$name started=$SECONDS
  rm -rf "$out" && mkdir -p "$out"
  log "building $name $version ($*)"
  (cd "$K8S_MODS/$name" && go_env go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$output" "$@") ||
    die "go build of $name failed"
  mv -f "$out"/* "$K8S_BIN/"
  rmdir "$out"
  stamp_for "$name" "$version" "$ldflags" >"$K8S_BIN/.$name.stamp"
  log "built $name in $((SECONDS - started))s"
}

# kube_ldflags: the version stamps hack/lib/version.sh sets; clients (kube-rs,
# helm) read the server version, and gitVersion also drives the apiserver's
# emulation/compatibility version. The release commit is unknown from the
# module, so gitCommit is blanked rather than left as "$Format:%H$".
kube_ldflags() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local pkg flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
  done
  echo "$flags"
}

install_kube() {
  local ldflags; ldflags=$(kube_ldflags)
  up_to_date kube "$K8S_VERSION" "$ldflags" kube-apiserver kube-controller-manager kubectl \
    kubelet kube-proxy kube-scheduler && return 0
  # One go build for all six links them in parallel from shared packages.
  build kube "$K8S_VERSION" "$ldflags" "" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-scheduler
}

install_etcd() {
  up_to_date etcd "$ETCD_VERSION" "" etcd && return 0
  # The main package is the server module's root (go would name it "server").
  build etcd "$ETCD_VERSION" "" etcd go.etcd.io/etcd/server/v3
}

install_helm() {
  local v=helm.sh/helm/v3 ldflags
  ldflags="-X $v/internal/version.version=$HELM_VERSION -X $v/internal/version.gitTreeState=clean"
  ldflags+=" -X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
  ldflags+=" -X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
  up_to_date helm "$HELM_VERSION" "$ldflags" helm && return 0
  build helm "$HELM_VERSION" "$ldflags" helm $v/cmd/helm
}

cmd_install() {
  command -v go >/dev/null || die "go is required (Go 1.26+) to build the control plane"
  mkdir -p "$K8S_BIN"
  local started=$SECONDS
  install_kube
  install_etcd
  install_helm
  log "control-plane binaries ready in $K8S_BIN ($((SECONDS - started))s)"
}

# ------------------------------------------------------------------- pki --

# All credentials are made fresh on each start (the run dir is wiped on stop).
# One CA signs the serving cert and the client certs, as kubeadm does.
make_pki() {
  command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
  mkdir -p "$K8S_PKI" && chmod 700 "$K8S_PKI"
  ossl req -x509 -newkey rsa:2048 -nodes -days 3650 \
    -keyout "$K8S_PKI/ca.key" -out "$K8S_PKI/ca.crt" -subj "/CN=parley-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  # Serving cert: loopback for tests, the node's address (pods reach the
  # apiserver there through the kubernetes Service), the first service IP and
  # the in-cluster names for anything that resolves the kubernetes service.
  sign_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,DNS:localhost,IP:$PARLEY_NODE_IP,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # system:masters bypasses RBAC: the tests' admin and the controller-manager
  # (which runs every controller under its own identity).
  sign_cert admin "/O=system:masters/CN=parley-admin" clientAuth
  sign_cert controller-manager "/O=system:masters/CN=system:kube-controller-manager" clientAuth
  # The apiserver's identity towards the kubelet (logs, exec, port-forward).
  sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  # Service-account token signing pair (TokenRequest and legacy SA secrets).
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K8S_PKI/sa.key"
  ossl pkey -in "$K8S_PKI/sa.key" -pubout -out "$K8S_PKI/sa.pub"
}

# ossl ARGS...: openssl, chatter to pki.log, and a clear death on failure.
ossl() {
  openssl "$@" >>"$K8S_RUN/pki.log" 2>&1 ||
    die "openssl $1 failed: $(tail -n 20 "$K8S_RUN/pki.log")"
}

# sign_cert NAME SUBJECT EKU [SAN]: pki/NAME.{key,crt} signed by the CA.
sign_cert() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  local p=$K8S_PKI/$name
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$p.ext"
  ossl req -new -newkey rsa:2048 -nodes -keyout "$p.key" -out "$p.csr" -subj "$subj"
  ossl x509 -req -in "$p.csr" -CA "$K8S_PKI/ca.crt" -CAkey "$K8S_PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$p.ext" -out "$p.crt"
  rm -f "$p.csr" "$p.ext"
}

# write_kubeconfig FILE USER CERTNAME: certs embedded so the file stands alone
# (kube-rs, helm and kubectl all read it as is).
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  local kc=("$K8S_BIN/kubectl" config --kubeconfig "$file")
  rm -f "$file"
  "${kc[@]}" set-cluster "$CONTEXT" --server "$APISERVER_URL" \
    --certificate-authority "$K8S_PKI/ca.crt" --embed-certs=true >/dev/null
  "${kc[@]}" set-credentials "$user" --client-certificate "$K8S_PKI/$cert.crt" \
    --client-key "$K8S_PKI/$cert.key" --embed-certs=true >/dev/null
  "${kc[@]}" set-context "$CONTEXT" --cluster "$CONTEXT" --user "$user" >/dev/null
  "${kc[@]}" use-context "$CONTEXT" >/dev/null
  chmod 600 "$file"
}

# ------------------------------------------------------------- processes --

pidfile() { echo "$K8S_RUN/$1.pid"; }
logfile() { echo "$K8S_RUN/$1.log"; }

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME ARGS...: run K8S_BIN/NAME detached (own session, so it outlives
# this script and its terminal) with output to NAME.log.
launch() {
  local name=$1; shift
  setsid "$K8S_BIN/$name" "$@" </dev/null >>"$(logfile "$name")" 2>&1 &
  echo $! >"$(pidfile "$name")"
}

# fail NAME MESSAGE: show NAME's log tail, stop what was started, and die.
# The run dir is kept for inspection; the next start wipes it.
fail() {
  local name=$1 msg=$2
  log "$msg; last lines of $(logfile "$name"):"
  tail -n 40 "$(logfile "$name")" >&2 || true
  stop_processes
  die "$msg"
}

# await NAME SECONDS COMMAND...: like wait_for, but gives up at once when
# NAME's process has exited.
await() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    pid_alive "$(pidfile "$name")" || fail "$name" "$name exited during startup"
    ((SECONDS < deadline)) || fail "$name" "$name not ready after ${secs}s"
    sleep 0.5
  done
}

etcd_healthy() { curl -sf --max-time 2 "$ETCD_URL/health" | grep -q '"health":"true"'; }

apiserver_ready() {
  [[ $(curl -s --max-time 3 --cacert "$K8S_PKI/ca.crt" --cert "$K8S_PKI/admin.crt" \
    --key "$K8S_PKI/admin.key" "$APISERVER_URL/readyz" 2>/dev/null) == ok ]]
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

start_etcd() {
  # --unsafe-no-fsync: test data is thrown away, and fsync dominates write
  # latency on slow CI disks.
  launch etcd \
    --name parley --data-dir "$K8S_RUN/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$PARLEY_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PARLEY_ETCD_PEER_PORT" \
    --initial-cluster "parley=http://127.0.0.1:$PARLEY_ETCD_PEER_PORT" \
    --initial-cluster-state new --unsafe-no-fsync --log-level warn
  await etcd 30 etcd_healthy
}

start_apiserver() {
  # Bound to every address so pods reach it on the node's pod-network address
  # (scripts/env/node.sh net), which it advertises: the "kubernetes" Service's
  # endpoints point there. Clients on the host keep using 127.0.0.1.
  # A /16 service range: every ChatCluster owns a ClusterIP Service, and the
  # many-ChatCluster benchmark applies 1,000 of them (a /24 holds 254).
  launch kube-apiserver \
    --bind-address 0.0.0.0 --advertise-address "$PARLEY_NODE_IP" \
    --secure-port "$PARLEY_APISERVER_PORT" \
    --etcd-servers "$ETCD_URL" \
    --tls-cert-file "$K8S_PKI/apiserver.crt" --tls-private-key-file "$K8S_PKI/apiserver.key" \
    --client-ca-file "$K8S_PKI/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-account-issuer "$SA_ISSUER" --api-audiences "$SA_ISSUER" \
    --service-account-key-file "$K8S_PKI/sa.pub" \
    --service-account-signing-key-file "$K8S_PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/16 \
    --kubelet-client-certificate "$K8S_PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$K8S_PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$K8S_PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true \
    --profiling=false
  await kube-apiserver 120 apiserver_ready
}

start_controller_manager() {
  # --use-service-account-credentials=false: every controller acts as the
  # controller-manager's own (system:masters) identity, so no per-controller
  # RBAC bootstrap is needed. Its secure port serves only /healthz: without
  # --authentication-kubeconfig (which would want a request-header CA the
  # apiserver does not have, and log about it forever) the rest is denied.
  launch kube-controller-manager \
    --kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$PARLEY_KCM_PORT" \
    --controllers "$KCM_CONTROLLERS" \
    --use-service-account-credentials=false --leader-elect=false \
    --root-ca-file "$K8S_PKI/ca.crt" \
    --service-account-private-key-file "$K8S_PKI/sa.key" \
    --profiling=false
  # The default ServiceAccount is made by the serviceaccount controller, so
  # its existence proves the controller-manager is at work.
  await kube-controller-manager 90 kubectl_admin -n default get serviceaccount default
}

# stop_processes: reverse start order, so nothing logs errors about a
# dependency vanishing first.
stop_processes() {
  local name
  for name in kube-controller-manager kube-apiserver etcd; do
    stop_pidfile "$(pidfile "$name")" "$name"
  done
}

# running: all three processes are alive and the apiserver is ready.
running() {
  local name
  for name in etcd kube-apiserver kube-controller-manager; do
    pid_alive "$(pidfile "$name")" || return 1
  done
  apiserver_ready
}

# ------------------------------------------------------------- env file --

env_lines() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export PATH=$K8S_BIN:\$PATH"
}

# write_env_lines / drop_env_lines: this script's lines in PARLEY_ENV_FILE,
# through common.sh's locked editor so other services' lines stay intact.
# (This is the only service that exports PATH there.)
write_env_lines() {
  env_file_edit KUBECONFIG "export KUBECONFIG=$KUBECONFIG_FILE"
  env_file_edit PATH "export PATH=$K8S_BIN:\$PATH"
}

drop_env_lines() {
  [[ -f $PARLEY_ENV_FILE ]] || return 0
  env_file_edit KUBECONFIG
  env_file_edit PATH
}

# ------------------------------------------------------------- commands --

cmd_start() {
  command -v curl >/dev/null || die "curl is required (apt-get install curl)"
  if running; then
    log "kubernetes already running at $APISERVER_URL"
    write_env_lines
    return 0
  fi
  cmd_install
  # A partial or crashed earlier run: clear it so this start is clean.
  stop_processes
  rm -rf "$K8S_RUN"
  local port
  for port in "$PARLEY_ETCD_PORT" "$PARLEY_ETCD_PEER_PORT" "$PARLEY_APISERVER_PORT" "$PARLEY_KCM_PORT"; do
    port_free "$port" || die "port 127.0.0.1:$port is already in use by another process"
  done
  mkdir -p "$K8S_RUN"
  local started=$SECONDS
  make_pki
  write_kubeconfig "$KUBECONFIG_FILE" parley-admin admin
  write_kubeconfig "$K8S_RUN/controller-manager.kubeconfig" kube-controller-manager controller-manager
  start_etcd
  start_apiserver
  start_controller_manager
  write_env_lines
  log "kubernetes $K8S_VERSION ready at $APISERVER_URL in $((SECONDS - started))s (KUBECONFIG=$KUBECONFIG_FILE)"
}

cmd_stop() {
  stop_processes
  rm -rf "$K8S_RUN"
  drop_env_lines
  log "kubernetes stopped"
}

# cmd_status: one line per process; exit 0 only when all run and the
# apiserver is ready.
cmd_status() {
  local name ok=0 pf
  for name in etcd kube-apiserver kube-controller-manager; do
    pf=$(pidfile "$name")
    if pid_alive "$pf"; then
      echo "$name: running (pid $(cat "$pf"))"
    else
      echo "$name: stopped"; ok=1
    fi
  done
  if [[ -f $K8S_PKI/ca.crt ]] && apiserver_ready; then
    echo "apiserver $APISERVER_URL: ready"
  else
    echo "apiserver $APISERVER_URL: not ready"; ok=1
  fi
  return $ok
}

main() {
  case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) env_lines ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
  esac
}

# Sourced by node.sh for the PKI and process helpers; run, it is a command.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
