#!/bin/sh
# Installs tepui on this machine, or into a root directory (for packagers): the binary, a
# `tepui` system user for the server, private directories, a config file and the systemd
# units; starts the units it is asked for when systemd runs here. Safe to run again.
#
#   install.sh [--binary PATH] [--root DIR] [--role server|agent|both] [--no-start]
#              [--bootstrap | --join ADDR --token TOKEN] [--bind IP] [--name NAME]
#   install.sh --uninstall [--purge] [--root DIR]
#
# --binary   the tepui binary [default: `tepui` beside this script, else the one in PATH]
# --root     install below DIR instead of / (nothing is started; the user goes into DIR/etc)
# --role     which units to enable and start [default: the token's role; server with
#            --bootstrap; none otherwise: both are installed]
# --bootstrap, --join ADDR --token TOKEN, --bind, --name
#            written into a new config file for the first start (as `tepui join` would take
#            them: a server token joins a server, an agent token an agent)
# --uninstall  stops and removes the units and the binary; --purge also the config, the data
#            dirs and the user
#
# Layout: /usr/local/bin/tepui; /etc/tepui (0700) with config.toml (0600); the server's data
# in /var/lib/tepui (0700, the tepui user: the server runs as it); the agent's in
# /var/lib/tepui-agent (0700, root: it makes containers); /etc/systemd/system/tepui-*.service.
set -eu
# What is public is 0755/0644 whatever the caller's umask; the private parts say so.
umask 022

usage() {
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
root=/
binary=
role=
start=yes
uninstall=no
purge=no
bootstrap=no
join=
token=
bind=
name=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --role) role=${2:?--role needs server, agent or both}; shift 2 ;;
    --no-start) start=no; shift ;;
    --bootstrap) bootstrap=yes; shift ;;
    --join) join=${2:?--join needs ADDR}; shift 2 ;;
    --token) token=${2:?--token needs a join token}; shift 2 ;;
    --bind) bind=${2:?--bind needs an IP}; shift 2 ;;
    --name) name=${2:?--name needs a name}; shift 2 ;;
    --uninstall) uninstall=yes; shift ;;
    --purge) purge=yes; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run it as root (it creates a user and system directories)"
root=$(cd "$root" 2>/dev/null && pwd) || fail "--root: no directory $root"
# Paths below the root; R is empty for the machine itself.
R=${root%/}

if [ -n "$join" ] || [ -n "$token" ]; then
  [ -n "$join" ] && [ -n "$token" ] || fail "--join and --token go together"
  [ "$bootstrap" = no ] || fail "--bootstrap starts a new cluster; --join joins one: give one of them"
  case $token in
    tepui1.server.*) token_role=server ;;
    tepui1.agent.*) token_role=agent ;;
    *) fail "--token is not a join token (tepui1.server.... or tepui1.agent....)" ;;
  esac
  [ -z "$role" ] || [ "$role" = "$token_role" ] || [ "$role" = both ] || fail "a $token_role token cannot start a $role"
  [ -n "$role" ] || role=$token_role
fi
[ "$bootstrap" = no ] || [ -n "$role" ] || role=server
case ${role:-none} in
  server) units=tepui-server ;;
  agent) units=tepui-agent ;;
  both) units="tepui-server tepui-agent" ;;
  none) units= ;;
  *) fail "--role must be server, agent or both" ;;
esac

# systemctl only for this machine's own running systemd.
with_systemd() {
  [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

if [ "$uninstall" = yes ]; then
  if with_systemd; then
    for u in tepui-server tepui-agent; do
      systemctl disable --now "$u.service" >/dev/null 2>&1 || true
    done
  fi
  rm -f "$R/etc/systemd/system/tepui-server.service" "$R/etc/systemd/system/tepui-agent.service" \
    "$R/usr/local/bin/tepui"
  with_systemd && systemctl daemon-reload
  if [ "$purge" = yes ]; then
    rm -rf "$R/etc/tepui" "$R/var/lib/tepui" "$R/var/lib/tepui-agent"
    for f in passwd shadow group gshadow; do
      [ -f "$R/etc/$f" ] && sed -i '/^tepui:/d' "$R/etc/$f"
    done
    echo "tepui removed, with its config, its data and the tepui user"
  else
    echo "tepui removed; kept $R/etc/tepui, $R/var/lib/tepui and $R/var/lib/tepui-agent (--purge removes them)"
  fi
  exit 0
fi

# The binary.
if [ -z "$binary" ]; then
  if [ -x "$here/tepui" ]; then
    binary=$here/tepui
  else
    binary=$(command -v tepui 2>/dev/null) || fail "no tepui beside $here nor in PATH: give --binary PATH"
  fi
fi
[ -f "$binary" ] || fail "--binary: no file $binary"
mkdir -p "$R/usr/local/bin"
target=$R/usr/local/bin/tepui
if [ "$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")" != "$target" ]; then
  # A new file renamed into place: a running tepui keeps its old one.
  cp "$binary" "$target.new"
  chmod 0755 "$target.new"
  mv -f "$target.new" "$target"
fi

# The user the server runs as.
# No login: nologin where the root has it, else its usual place (a missing shell logs no one in).
nologin=/usr/sbin/nologin
for s in /usr/sbin/nologin /sbin/nologin; do
  if [ -x "$R$s" ]; then nologin=$s; break; fi
done
# The lowest id from 100 to 999 that no line of FILE uses (third field).
free_id() {
  id=100
  while cut -d: -f3 "$1" | grep -qx "$id"; do id=$((id + 1)); done
  [ "$id" -le 999 ] || fail "no free system id in $1"
  echo "$id"
}
if [ ! -f "$R/etc/passwd" ]; then
  echo "note: $R/etc/passwd does not exist; create the tepui user where this is unpacked (useradd --system tepui)"
elif ! grep -q '^tepui:' "$R/etc/passwd"; then
  if [ -z "$R" ] && command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/tepui --no-create-home --shell "$nologin" \
      --comment "tepui server" tepui
  elif [ -z "$R" ] && command -v adduser >/dev/null 2>&1 && command -v addgroup >/dev/null 2>&1; then
    # BusyBox's (Alpine and small systems).
    grep -q '^tepui:' /etc/group 2>/dev/null || addgroup -S tepui
    adduser -S -D -H -h /var/lib/tepui -s "$nologin" -G tepui -g "tepui server" tepui
  else
    # A root directory (or a system without the tools): the files themselves.
    touch "$R/etc/group"
    gid=$(grep '^tepui:' "$R/etc/group" | cut -d: -f3)
    if [ -z "$gid" ]; then
      gid=$(free_id "$R/etc/group")
      echo "tepui:x:$gid:" >> "$R/etc/group"
      [ -f "$R/etc/gshadow" ] && echo "tepui:!::" >> "$R/etc/gshadow"
    fi
    uid=$(free_id "$R/etc/passwd")
    echo "tepui:x:$uid:$gid:tepui server:/var/lib/tepui:$nologin" >> "$R/etc/passwd"
    [ -f "$R/etc/shadow" ] && echo "tepui:!:::::::" >> "$R/etc/shadow"
  fi
fi
owner=root:root
if [ -f "$R/etc/passwd" ] && grep -q '^tepui:' "$R/etc/passwd"; then
  owner=$(grep '^tepui:' "$R/etc/passwd" | cut -d: -f3,4)
fi

# Directories: each its daemon's only. The server's holds the cluster CA's key (in the Raft
# state), the agent's the tasks' sandboxes; /etc/tepui the config, which can hold a token.
private_dir() {
  mkdir -p "$1"
  chmod 0700 "$1"
  chown "$2" "$1"
}
private_dir "$R/etc/tepui" root:root
private_dir "$R/var/lib/tepui" "$owner"
private_dir "$R/var/lib/tepui-agent" root:root

# The config file: written once, never over an operator's.
config=$R/etc/tepui/config.toml
if [ -f "$config" ]; then
  if [ "$bootstrap" = yes ] || [ -n "$join$bind$name" ]; then
    echo "note: kept the existing $config; the first-start settings given were not written (edit it)"
  fi
else
  # One table per daemon; `role` is where --join/--token/--bootstrap go.
  settings() {
    table=$1
    [ -z "$bind" ] || echo "bind = \"$bind\""
    # The name for the daemons this machine runs (one name for two nodes would be ambiguous).
    case " $units " in
      "  " | *" tepui-$table "*) [ -z "$name" ] || echo "name = \"$name\"" ;;
    esac
    if [ "$table" = server ] && [ "$bootstrap" = yes ]; then
      echo "# Makes a new cluster on the first start; ignored once the data dir holds one."
      echo "bootstrap = true"
    fi
    if [ -n "$join" ] && [ "$table" = "$token_role" ]; then
      echo "# The first start joins through this server; later starts need neither."
      echo "join = \"$join\""
      echo "token = \"$token\""
    fi
  }
  (
    umask 077
    {
      echo "# tepui's configuration: the daemons' long flags as keys (tepui server --help,"
      echo "# tepui agent --help). Flags on the command line and TEPUI_* variables win over it."
      echo "# Check it with: tepui config check --config /etc/tepui/config.toml"
      echo
      echo "[server]"
      settings server
      echo "# snapshot-dir = \"/var/lib/tepui/backups\""
      echo "# snapshot-interval = \"1h\""
      echo
      echo "[agent]"
      settings agent
    } > "$config.new"
  )
  chmod 0600 "$config.new"
  mv -f "$config.new" "$config"
fi

# The units.
mkdir -p "$R/etc/systemd/system"
for u in tepui-server tepui-agent; do
  cp "$here/systemd/$u.service" "$R/etc/systemd/system/$u.service.new"
  chmod 0644 "$R/etc/systemd/system/$u.service.new"
  mv -f "$R/etc/systemd/system/$u.service.new" "$R/etc/systemd/system/$u.service"
done

echo "tepui installed in ${R:-/}: /usr/local/bin/tepui, /etc/tepui/config.toml, tepui-server.service, tepui-agent.service"
if with_systemd; then
  systemctl daemon-reload
  for u in $units; do
    if [ "$start" = yes ]; then
      systemctl enable --now "$u.service"
      echo "$u started"
    else
      systemctl enable "$u.service"
      echo "$u enabled"
    fi
  done
  [ -n "$units" ] || echo "start one: systemctl enable --now tepui-server (or tepui-agent)"
elif [ -z "$R" ]; then
  echo "no systemd here: run tepui server --config /etc/tepui/config.toml --data-dir /var/lib/tepui"
fi
