#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Safe to run again.
set -euo pipefail

need=()
# The build links libseccomp (container seccomp filters) and builds libbpf (device rules on
# cgroup v2), which wants libelf, zlib and pkg-config.
for pkg in ca-certificates curl busybox-static docker-registry skopeo iproute2 iptables \
    libseccomp-dev libelf-dev zlib1g-dev pkg-config; do
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
