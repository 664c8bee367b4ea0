#!/usr/bin/env bash
# Install (cached) and start the whole test environment: the pod network,
# 3-broker Kafka, kube-apiserver + etcd + controller-manager, PostgreSQL, and
# the headless browser for page tests; with PARLEY_NODE=1 also the node
# (scripts/env/node.sh: kubelet, containerd, kube-proxy, scheduler, workload
# controllers) with the images built from this checkout. Idempotent.
# Prints the variables that reach each service; `source $PARLEY_RUN/env.sh`
# puts them in a shell.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

services=(postgres kafka k8s)
# node: Debian's runc/CNI/iptables and containerd's build; images: buildah,
# mmdebstrap and the base image. Installed always (a cold machine builds them
# beside the rest), started only with PARLEY_NODE=1.
installs=("${services[@]}" browser node images)

# Installs are independent (apt, Maven, Go); run them side by side so a cold
# machine waits for the slowest, not the sum.
pids=()
for svc in "${installs[@]}"; do
  mkdir -p "$PARLEY_RUN/logs"
  "$here/$svc.sh" install > "$PARLEY_RUN/logs/install-$svc.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!installs[@]}"; do
  if ! wait "${pids[$i]}"; then
    log "installing ${installs[$i]} failed; last lines of its log:"
    tail -n 40 "$PARLEY_RUN/logs/install-${installs[$i]}.log" >&2
    failed=1
  fi
done
((failed == 0)) || exit 1

# Kafka and PostgreSQL also listen on the node's pod-network address.
"$here/node.sh" net
for svc in "${services[@]}"; do
  "$here/$svc.sh" start
done
if [[ ${PARLEY_NODE:-0} == 1 ]]; then
  "$here/images.sh" build
  "$here/node.sh" start
fi
while read -r line; do
  name=${line#export }
  env_file_edit "${name%%=*}" "$line"
done < <("$here/browser.sh" env)

log "environment is up; reach it with:"
cat "$PARLEY_ENV_FILE"
