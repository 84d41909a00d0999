#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Safe to run again.
set -euo pipefail

# What the build links against first.
"$(dirname "$0")/../deploy/build-deps.sh"

need=()
# chromium and chromium-driver: the web UI's browser tests (e2e/tests/ui.rs); npm installs
# their accessibility engine below. groff-base: the man pages render (e2e/tests/cli_tools.rs).
# systemd (systemd-analyze) and vagrant: the install script's and the Vagrantfile's checks
# (e2e/tests/install.rs, vagrant.rs). prometheus: promtool checks /metrics and the alert rules
# (e2e/tests/metrics.rs).
for pkg in ca-certificates curl busybox-static docker-registry skopeo iproute2 iptables dnsutils chromium chromium-driver groff-base systemd vagrant prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# npm may come with another build of node (nodesource's provides it): only the command matters.
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${need[*]}; run this script as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# axe-core for the web UI's accessibility checks, at the version e2e/ui/package-lock.json pins.
# `npm ci` only when the lock changed since the last install (it empties node_modules first);
# a copy of the lock it installed marks that install.
ui="$(dirname "$0")/ui"
if ! cmp -s "$ui/package-lock.json" "$ui/node_modules/.installed-lock.json"; then
  (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
fi
