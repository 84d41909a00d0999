#!/bin/sh
# Installs a tepui binary and its systemd units on this machine.
#   deploy/install.sh PATH-TO-tepui [server|agent] [extra daemon args...]
set -eu
bin=${1:?usage: install.sh PATH-TO-tepui [server|agent] [args...]}
role=${2:-agent}
shift 2 || true
here=$(cd "$(dirname "$0")" && pwd)
install -m 0755 "$bin" /usr/local/bin/tepui
install -d -m 0700 /var/lib/tepui
install -m 0644 "$here/systemd/tepui-$role.service" /etc/systemd/system/
if [ ! -f /etc/default/tepui ]; then
  ip=$(hostname -I 2>/dev/null | awk '{print $1}')
  upper=$(echo "$role" | tr a-z A-Z)
  printf 'TEPUI_BIND=%s\nTEPUI_%s_ARGS=%s\n' "${ip:-127.0.0.1}" "$upper" "$*" > /etc/default/tepui
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now "tepui-$role"
  # A server's API is on loopback unless its args say --http-bind.
  echo "tepui-$role started; on this machine: tepui status --addr 127.0.0.1:5050"
else
  echo "no systemd here: run /usr/local/bin/tepui $role --data-dir /var/lib/tepui $*"
fi
