#!/usr/bin/env bash
# A real node for the test cluster (scripts/env/k8s.sh): containerd 2 with
# runc, CNI bridge networking, kubelet, kube-proxy (iptables), kube-scheduler
# and the workload controllers (a second kube-controller-manager running the
# deployment, replicaset, endpoint and node controllers), so pods really run.
#
#   node.sh net       make the pod network: bridge $PARLEY_NODE_BRIDGE with
#                     the node's address, and the rules that keep pod traffic
#                     on this machine (up.sh runs it first: Kafka and
#                     PostgreSQL listen on that address too)
#   node.sh net-down  remove it again
#   node.sh install   build containerd/ctr/crictl (Go modules); runc, CNI
#                     plugins and iptables from Debian (kubelet, kube-proxy
#                     and kube-scheduler: k8s.sh install)
#   node.sh start     start the node (the control plane must be up) and load
#                     the images from scripts/env/images.sh
#   node.sh load      reload the images (after images.sh build) into a
#                     running node
#   node.sh stop | status | env
#
# Needs root: network namespaces, cgroups, mounts. The kubelet runs with the
# cgroupfs driver on this machine's cgroup v1 hierarchy (failCgroupV1: false).
set -euo pipefail

NODE_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# k8s.sh: the pinned versions, PKI and process helpers (launch, await, ...).
# shellcheck source=k8s.sh
source "$NODE_HERE/k8s.sh"

CONTAINERD_MOD=$K8S_MODS/containerd
CONTAINERD_VERSION=v2.4.2 # must match k8s/containerd/go.mod
CTR_BIN=$K8S_BIN
NODE_RUN=$PARLEY_RUN/node
CONTAINERD_SOCK=$NODE_RUN/containerd/containerd.sock
CNI_BIN=/usr/lib/cni
# Node processes in start order (stopped in reverse).
NODE_PROCS=(containerd kubelet kube-proxy kube-scheduler workload-controllers)
WORKLOAD_CONTROLLERS=deployment-controller,replicaset-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,node-lifecycle-controller,taint-eviction-controller,pod-garbage-collector-controller,ttl-after-finished-controller,job-controller,statefulset-controller,daemonset-controller,disruption-controller
# Where every image pull goes: nothing listens there, so a pull of an image
# that was not loaded fails at once instead of reaching for a registry.
NO_REGISTRY=http://127.0.0.1:9

need_root() { ((EUID == 0)) || die "the node needs root (network namespaces, cgroups, mounts)"; }

# ----------------------------------------------------------------- network --

bridge_ready() { ip -4 addr show dev "$PARLEY_NODE_BRIDGE" 2>/dev/null | grep -q "inet $PARLEY_NODE_IP/"; }

cmd_net() {
  need_root
  command -v iptables >/dev/null || install_debs
  local prefix=${PARLEY_POD_CIDR#*/}
  ip link show "$PARLEY_NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$PARLEY_NODE_BRIDGE" type bridge
  bridge_ready || ip addr add "$PARLEY_NODE_IP/$prefix" dev "$PARLEY_NODE_BRIDGE"
  ip link set "$PARLEY_NODE_BRIDGE" up
  # Service addresses are rewritten to pod addresses by kube-proxy; one that
  # is not (no such Service yet) stays on the bridge instead of the default
  # route.
  ip route replace "$PARLEY_SERVICE_CIDR" dev "$PARLEY_NODE_BRIDGE"
  # Routing between pods and services through the node, and bridged traffic
  # through iptables (kube-proxy's rules), as kubeadm requires. The values
  # found are kept so net-down puts them back.
  local key
  for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; do
    [[ -f $PARLEY_RUN/sysctl.$key ]] || { mkdir -p "$PARLEY_RUN"; sysctl -n "$key" >"$PARLEY_RUN/sysctl.$key"; }
    sysctl -qw "$key=1"
  done
  # Pods may talk to pods, services and the node, nothing else: whatever
  # they send to any other address is dropped before routing (raw table:
  # kube-proxy does not touch it).
  iptables -t raw -N PARLEY-POD-EGRESS 2>/dev/null || iptables -t raw -F PARLEY-POD-EGRESS
  iptables -t raw -A PARLEY-POD-EGRESS -d "$PARLEY_POD_CIDR" -j RETURN
  iptables -t raw -A PARLEY-POD-EGRESS -d "$PARLEY_SERVICE_CIDR" -j RETURN
  iptables -t raw -A PARLEY-POD-EGRESS -j DROP
  iptables -t raw -C PREROUTING -i "$PARLEY_NODE_BRIDGE" -j PARLEY-POD-EGRESS 2>/dev/null ||
    iptables -t raw -I PREROUTING -i "$PARLEY_NODE_BRIDGE" -j PARLEY-POD-EGRESS
  log "pod network $PARLEY_POD_CIDR on $PARLEY_NODE_BRIDGE ($PARLEY_NODE_IP), services $PARLEY_SERVICE_CIDR"
}

cmd_net_down() {
  need_root
  if command -v iptables >/dev/null; then
    while iptables -t raw -D PREROUTING -i "$PARLEY_NODE_BRIDGE" -j PARLEY-POD-EGRESS 2>/dev/null; do :; done
    iptables -t raw -F PARLEY-POD-EGRESS 2>/dev/null || true
    iptables -t raw -X PARLEY-POD-EGRESS 2>/dev/null || true
  fi
  ip route del "$PARLEY_SERVICE_CIDR" dev "$PARLEY_NODE_BRIDGE" 2>/dev/null || true
  ip link del "$PARLEY_NODE_BRIDGE" 2>/dev/null || true
  local key
  for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; do
    if [[ -f $PARLEY_RUN/sysctl.$key ]]; then
      sysctl -qw "$key=$(cat "$PARLEY_RUN/sysctl.$key")" || true
      rm -f "$PARLEY_RUN/sysctl.$key"
    fi
  done
}

# ----------------------------------------------------------------- install --

# Debian's runc, CNI plugins, iptables (kube-proxy) and conntrack (it clears
# UDP flows with it).
install_debs() {
  local missing=() cmd
  for cmd in runc iptables conntrack; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  [[ -x $CNI_BIN/bridge ]] || missing+=(containernetworking-plugins)
  ((${#missing[@]})) || return 0
  need_root
  local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
  apt-cache show runc >/dev/null 2>&1 || "${apt[@]}" update >&2
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2
}

# k8s.sh's stamped build, from the containerd wrapper module into the same
# bin dir as the Kubernetes binaries.
install_containerd() {
  up_to_date containerd "$CONTAINERD_VERSION" "" containerd containerd-shim-runc-v2 ctr crictl && return 0
  build containerd "$CONTAINERD_VERSION" "" "" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr \
    sigs.k8s.io/cri-tools/cmd/crictl
}

# kubelet, kube-proxy and kube-scheduler come with the control plane's build
# (k8s.sh install: one go build, shared packages), which start checks.
cmd_node_install() {
  command -v go >/dev/null || die "go is required (Go 1.26+) to build the node"
  install_debs
  mkdir -p "$K8S_BIN"
  install_containerd
}

# ------------------------------------------------------------------ config --

write_containerd_config() {
  mkdir -p "$NODE_RUN/containerd" "$NODE_RUN/cni/net.d" "$NODE_RUN/registry/_default"
  cat >"$NODE_RUN/containerd/config.toml" <<EOF
# Generated by scripts/env/node.sh.
version = 4
root = '$NODE_RUN/containerd/root'
state = '$NODE_RUN/containerd/state'
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = '$CONTAINERD_SOCK'
[plugins.'io.containerd.server.v1.ttrpc']
  address = '$CONTAINERD_SOCK.ttrpc'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Built by scripts/env/images.sh; no registry serves the usual one here.
    sandbox = '$PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$NODE_RUN/registry'

[plugins.'io.containerd.transfer.v1.local']
  config_path = '$NODE_RUN/registry'

[plugins.'io.containerd.cri.v1.runtime']
  # The kubelet asks for negative OOM scores (sandboxes -998), which need
  # CAP_SYS_RESOURCE; root here lacks it, so they are capped at containerd's.
  restrict_oom_score_adj = true
  # Pod network namespaces under the run dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '$(command -v runc)'
      Root = '$NODE_RUN/runc'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$CNI_BIN']
    conf_dir = '$NODE_RUN/cni/net.d'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
EOF
  # Every registry: images here are loaded, never pulled (see NO_REGISTRY).
  cat >"$NODE_RUN/registry/_default/hosts.toml" <<EOF
server = '$NO_REGISTRY'
[host.'$NO_REGISTRY']
  capabilities = ['pull', 'resolve']
EOF
  # One bridge for all pods, the node's address as their gateway; no
  # masquerading: pods only ever talk to this machine.
  cat >"$NODE_RUN/cni/net.d/10-parley.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "parley",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$PARLEY_NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$PARLEY_POD_CIDR", "gateway": "$PARLEY_NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_RUN/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_kubelet_config() {
  mkdir -p "$NODE_RUN/kubelet"
  # No cluster DNS here: pods get an empty resolv.conf rather than the
  # host's resolvers (their traffic stays on this machine).
  : >"$NODE_RUN/kubelet/resolv.conf"
  cat >"$NODE_RUN/kubelet/config.yaml" <<EOF
# Generated by scripts/env/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $PARLEY_NODE_IP
port: $PARLEY_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $PARLEY_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $K8S_PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $K8S_PKI/kubelet.crt
tlsPrivateKeyFile: $K8S_PKI/kubelet.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# This machine mounts the cgroup v1 hierarchy, which the kubelet refuses by
# default since 1.35.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Its own OOM score stays as it is (lowering it needs CAP_SYS_RESOURCE).
oomScoreAdj: 0
resolvConf: $NODE_RUN/kubelet/resolv.conf
clusterDomain: cluster.local
podLogsDir: $NODE_RUN/pod-logs
# The disk is shared with builds and caches: evict only when nearly full,
# and never collect the loaded images. Absolute, not a percentage: 5% of a
# 252 GB disk is 13 GB, which a few build caches take, and the node then
# turned every test pod away (DiskPressure) with gigabytes still free.
evictionHard: {memory.available: 200Mi, nodefs.available: 2Gi, imagefs.available: 2Gi}
imageGCHighThresholdPercent: 100
maxPods: 60
serializeImagePulls: false
EOF
}

write_proxy_config() {
  mkdir -p "$NODE_RUN/kube-proxy"
  cat >"$NODE_RUN/kube-proxy/config.yaml" <<EOF
# Generated by scripts/env/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $K8S_RUN/controller-manager.kubeconfig}
hostnameOverride: $PARLEY_NODE_NAME
clusterCIDR: $PARLEY_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PARLEY_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PARLEY_PROXY_METRICS_PORT
# NodePorts answer on the node's pod-network address only.
nodePortAddresses: ["$PARLEY_NODE_IP/32"]
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0}
EOF
}

# node_pki: the kubelet's identity (system:node:NAME, which the Node
# authorizer scopes to its own pods) and its serving certificate.
# Made once per control plane (its PKI lives as long as it runs).
node_pki() {
  if [[ ! -f $K8S_PKI/kubelet.crt ]]; then
    sign_cert kubelet-client "/O=system:nodes/CN=system:node:$PARLEY_NODE_NAME" clientAuth
    sign_cert kubelet "/CN=$PARLEY_NODE_NAME" serverAuth "IP:$PARLEY_NODE_IP,DNS:$PARLEY_NODE_NAME"
  fi
  write_kubeconfig "$NODE_RUN/kubelet/kubeconfig" "system:node:$PARLEY_NODE_NAME" kubelet-client
}

# --------------------------------------------------------------- processes --

node_pidfile() { echo "$NODE_RUN/$1.pid"; }
node_logfile() { echo "$NODE_RUN/$1.log"; }

# node_launch NAME BINARY ARGS...: like k8s.sh's launch, for node processes.
node_launch() {
  local name=$1 bin=$2; shift 2
  PATH=$CTR_BIN:$PATH setsid "$bin" "$@" </dev/null >>"$(node_logfile "$name")" 2>&1 &
  echo $! >"$(node_pidfile "$name")"
}

# node_await NAME SECONDS COMMAND...: poll until COMMAND succeeds; die with
# NAME's log when its process exits or time runs out.
node_await() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$(node_pidfile "$name")"; then node_fail "$name" "$name exited during startup"; fi
    ((SECONDS < deadline)) || node_fail "$name" "$name not ready after ${secs}s"
    sleep 0.5
  done
}

node_fail() {
  log "$2; last lines of $(node_logfile "$1"):"
  tail -n 40 "$(node_logfile "$1")" >&2 || true
  stop_node_processes
  die "$2"
}

crictl_() { "$CTR_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 10s "$@"; }
ctr_() { "$CTR_BIN/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

containerd_ready() { crictl_ info >/dev/null; }
kubelet_healthy() { [[ $(curl -s --max-time 2 "http://127.0.0.1:$PARLEY_KUBELET_HEALTHZ_PORT/healthz") == ok ]]; }
node_ready() {
  [[ $(kubectl_admin get node "$PARLEY_NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
proxy_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$PARLEY_PROXY_HEALTHZ_PORT/healthz" >/dev/null; }
secure_healthy() { curl -sk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -qx ok; }

start_containerd() {
  write_containerd_config
  node_launch containerd "$CTR_BIN/containerd" --config "$NODE_RUN/containerd/config.toml"
  node_await containerd 60 containerd_ready
  load_images
}

# load_images: images are loaded, never pulled: the sandbox image and the
# project's images that scripts/env/images.sh built.
load_images() {
  local archive
  for archive in "$IMAGES_DIR"/*.tar; do
    [[ -e $archive ]] || die "no images in $IMAGES_DIR: run scripts/env/images.sh build"
    ctr_ images import "$archive" >>"$(node_logfile containerd)" 2>&1 ||
      die "loading $archive into containerd failed (log: $(node_logfile containerd))"
  done
  log "images loaded: $(ctr_ images list -q | grep -c "^$IMAGE_PREFIX/") of $IMAGE_PREFIX"
}

cmd_load() {
  pid_alive "$(node_pidfile containerd)" || die "the node is not running (scripts/env/node.sh start)"
  load_images
}

start_kubelet() {
  write_kubelet_config
  node_pki
  node_launch kubelet "$K8S_BIN/kubelet" \
    --config "$NODE_RUN/kubelet/config.yaml" \
    --kubeconfig "$NODE_RUN/kubelet/kubeconfig" \
    --root-dir "$NODE_RUN/kubelet/root" \
    --cert-dir "$NODE_RUN/kubelet/pki" \
    --hostname-override "$PARLEY_NODE_NAME" \
    --node-ip "$PARLEY_NODE_IP" \
    --v 1
  node_await kubelet 120 kubelet_healthy
}

start_proxy() {
  write_proxy_config
  node_launch kube-proxy "$K8S_BIN/kube-proxy" --config "$NODE_RUN/kube-proxy/config.yaml"
  node_await kube-proxy 60 proxy_healthy
}

start_scheduler() {
  # The controller-manager's (system:masters) kubeconfig: no per-component
  # RBAC bootstrap is needed; /healthz only on the secure port (see k8s.sh).
  node_launch kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$PARLEY_SCHEDULER_PORT" \
    --leader-elect=false --profiling=false
  node_await kube-scheduler 60 secure_healthy "$PARLEY_SCHEDULER_PORT"
}

start_workload_controllers() {
  node_launch workload-controllers "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$PARLEY_WORKLOADS_PORT" \
    --controllers "$WORKLOAD_CONTROLLERS" \
    --use-service-account-credentials=false --leader-elect=false \
    --profiling=false
  node_await workload-controllers 60 secure_healthy "$PARLEY_WORKLOADS_PORT"
}

# remove_pods: stop and remove every pod sandbox while containerd runs, so no
# container, shim or mount outlives the node.
remove_pods() {
  pid_alive "$(node_pidfile containerd)" || return 0
  crictl_ stopp $(crictl_ pods -q 2>/dev/null) >/dev/null 2>&1 || true
  crictl_ rmp -f $(crictl_ pods -q 2>/dev/null) >/dev/null 2>&1 || true
}

stop_node_processes() {
  local i name
  for ((i = ${#NODE_PROCS[@]} - 1; i >= 0; i--)); do
    name=${NODE_PROCS[i]}
    [[ $name == containerd ]] && remove_pods
    stop_pidfile "$(node_pidfile "$name")" "$name"
  done
  # Shims left by a crash, and whatever still runs in the pods' cgroups.
  pkill -KILL -f "^$CTR_BIN/containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  local procs
  while read -r procs; do
    xargs -r kill -KILL <"$procs" 2>/dev/null || true
  done < <(find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null)
  # Mounts under the run dir (pod volumes, rootfs, sandbox namespaces),
  # deepest first, before the dir goes.
  local m
  if [[ -d $NODE_RUN ]]; then
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
      awk -v d="$NODE_RUN" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  fi
}

node_running() {
  local name
  for name in "${NODE_PROCS[@]}"; do pid_alive "$(node_pidfile "$name")" || return 1; done
  node_ready
}

cmd_node_start() {
  need_root
  running || die "the control plane is not running: scripts/env/k8s.sh start first"
  bridge_ready || cmd_net
  if node_running; then
    log "node $PARLEY_NODE_NAME already running"
    write_node_env
    return 0
  fi
  cmd_node_install
  cmd_install
  [[ -n $(ls "$IMAGES_DIR"/*.tar 2>/dev/null) ]] || "$NODE_HERE/images.sh" build
  stop_node_processes
  rm -rf "$NODE_RUN"
  mkdir -p "$NODE_RUN"
  local started=$SECONDS
  start_containerd
  start_kubelet
  start_proxy
  start_scheduler
  start_workload_controllers
  node_await kubelet 120 node_ready
  write_node_env
  log "node $PARLEY_NODE_NAME ready in $((SECONDS - started))s (pods on $PARLEY_POD_CIDR)"
}

cmd_node_stop() {
  stop_node_processes
  # The node object goes too, so a later start registers afresh and nothing
  # waits for pods of a node that is gone.
  if running; then kubectl_admin delete node "$PARLEY_NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true; fi
  rm -rf "$NODE_RUN"
  drop_node_env
  log "node stopped"
}

cmd_node_status() {
  local name ok=0 pf
  for name in "${NODE_PROCS[@]}"; do
    pf=$(node_pidfile "$name")
    if pid_alive "$pf"; then echo "$name: running (pid $(cat "$pf"))"; else echo "$name: stopped"; ok=1; fi
  done
  if node_ready; then echo "node $PARLEY_NODE_NAME: Ready"; else echo "node $PARLEY_NODE_NAME: not ready"; ok=1; fi
  return $ok
}

# The node's address, crictl's endpoint, and the images it has loaded.
node_env_lines() {
  echo "export PARLEY_NODE_IP=$PARLEY_NODE_IP CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_SOCK CRICTL=$CTR_BIN/crictl"
  images_env
}
write_node_env() {
  env_file_edit PARLEY_NODE_IP "$(node_env_lines | head -n 1)"
  env_file_edit PARLEY_OPERATOR_IMAGE "$(images_env)"
}
drop_node_env() {
  [[ -f $PARLEY_ENV_FILE ]] || return 0
  env_file_edit PARLEY_NODE_IP
  env_file_edit PARLEY_OPERATOR_IMAGE
}

# images.sh's settings (where the archives are, the sandbox image's name).
# shellcheck source=images.sh
source "$NODE_HERE/images.sh"

node_main() {
  case ${1:-} in
    net) cmd_net ;;
    net-down) cmd_net_down ;;
    install) cmd_node_install ;;
    start) cmd_node_start ;;
    stop) cmd_node_stop ;;
    status) cmd_node_status ;;
    load) cmd_load ;;
    env) node_env_lines ;;
    *) echo "usage: $0 net|net-down|install|start|stop|status|load|env" >&2; exit 2 ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then node_main "$@"; fi
