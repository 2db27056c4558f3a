#!/usr/bin/env bash
# `.ci/apt-install.sh WHO PKG...`: apt-get installs the Debian packages among PKG that are
# not installed yet (idempotent), saying so on stderr as WHO. Used by the setup-* scripts.
set -euo pipefail
who=$1
shift
missing=""
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "$who: apt-get install$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
