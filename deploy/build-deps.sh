#!/usr/bin/env bash
# Installs the Debian packages tepui's build links against, when they are missing: libseccomp
# (the containers' seccomp filters) and what libbpf is built with (device rules on cgroup v2:
# libelf, zlib, pkg-config). Safe to run again; needs root only to install.
set -euo pipefail

need=()
for pkg in libseccomp-dev libelf-dev zlib1g-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "build-deps: missing Debian packages ${need[*]}; run this script as root (or apt-get install them)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
