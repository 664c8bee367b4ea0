#!/usr/bin/env bash
# Stop everything scripts/env/up.sh started and remove its running state
# (the download/build cache stays).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

status=0
for svc in node k8s kafka postgres; do
  "$here/$svc.sh" stop || status=1
done
"$here/node.sh" net-down || status=1
rm -f "$PARLEY_ENV_FILE"
exit $status
