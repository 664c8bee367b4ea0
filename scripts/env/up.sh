#!/usr/bin/env bash
# Install (cached) and start the whole test environment: 3-broker Kafka,
# kube-apiserver + etcd + controller-manager, PostgreSQL. Idempotent.
# Prints the variables that reach each service; `source $PARLEY_RUN/env.sh`
# puts them in a shell.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

services=(postgres kafka k8s)

# Installs are independent (apt, Maven, Go); run them side by side so a cold
# machine waits for the slowest, not the sum.
pids=()
for svc in "${services[@]}"; do
  mkdir -p "$PARLEY_RUN/logs"
  "$here/$svc.sh" install > "$PARLEY_RUN/logs/install-$svc.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!services[@]}"; do
  if ! wait "${pids[$i]}"; then
    log "installing ${services[$i]} failed; last lines of its log:"
    tail -n 40 "$PARLEY_RUN/logs/install-${services[$i]}.log" >&2
    failed=1
  fi
done
((failed == 0)) || exit 1

for svc in "${services[@]}"; do
  "$here/$svc.sh" start
done

log "environment is up; reach it with:"
cat "$PARLEY_ENV_FILE"
