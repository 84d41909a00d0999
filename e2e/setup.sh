#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Safe to run again.
set -euo pipefail

# What the build links against first.
"$(dirname "$0")/../deploy/build-deps.sh"

need=()
for pkg in ca-certificates curl busybox-static docker-registry skopeo iproute2 iptables dnsutils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${need[*]}; run this script as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
