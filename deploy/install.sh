#!/usr/bin/env bash
# Install or upgrade siaran-edge on a Raspberry Pi (or any Debian with systemd); idempotent.
#
#   sudo deploy/install.sh [--no-start] [WHEEL_OR_SOURCE_DIR]
#
# Without an argument the source tree this script lives in is installed. Steps: the system user
# siaran-edge, a virtual environment in /opt/siaran-edge/venv, /etc/siaran-edge (a sample config
# if there is none; root-owned, readable by the service group only), the systemd unit, the ICMP
# sysctl, then `siaran-edge check-config` as the service user. The service is enabled and
# (re)started only when that check passes. See docs/deploy-raspberry-pi.md.
set -euo pipefail

USER_NAME=siaran-edge
PREFIX=/opt/siaran-edge
VENV=$PREFIX/venv
ETC=/etc/siaran-edge
CONFIG=$ETC/gateway.toml
SECRETS=$ETC/secrets.env
STATE=/var/lib/siaran-edge
UNIT=/etc/systemd/system/siaran-edge.service
SYSCTL=/etc/sysctl.d/99-siaran-edge-ping.conf
PYTHON=${PYTHON:-python3}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_TREE=$(dirname "$HERE")

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

start=yes
package=""
for arg in "$@"; do
    case $arg in
        --no-start) start=no ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) die "unknown option $arg" ;;
        *) package=$arg ;;
    esac
done
package=${package:-$SOURCE_TREE}
[ -e "$package" ] || die "no such wheel or source folder: $package"
package=$(realpath "$package")

[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11"
"$PYTHON" -c 'import ensurepip' 2>/dev/null \
    || die "$PYTHON cannot make virtual environments: apt install python3-venv"

# 1. The service user: a system account with no login and no home of its own.
if ! getent passwd "$USER_NAME" >/dev/null; then
    say "creating system user $USER_NAME"
    useradd --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --comment "siaran-edge gateway agent" "$USER_NAME"
fi
GID=$(getent group "$USER_NAME" | cut -d: -f3)

# 2. The program: a virtual environment owned by root (the service cannot change its code).
install -d -m 0755 -o root -g root "$PREFIX" "$PREFIX/docs"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
say "installing $package"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade "$package"
# same version number, new code (a source tree between releases): replace the package itself
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$package"
"$VENV/bin/siaran-edge" --version
if [ -f "$SOURCE_TREE/docs/deploy-raspberry-pi.md" ]; then
    install -m 0644 "$SOURCE_TREE/docs/deploy-raspberry-pi.md" "$PREFIX/docs/"
fi

# 3. Configuration: root-owned, readable by the service group, never writable by it.
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ ! -e "$CONFIG" ]; then
    say "no $CONFIG: installing the sample (edit it)"
    examples=$SOURCE_TREE/docs/examples
    sed 's|^state_dir = .*|state_dir = "/var/lib/siaran-edge"|' "$examples/gateway.toml" >"$CONFIG"
    for f in devices.toml poles.csv; do
        [ -e "$ETC/$f" ] || cp "$examples/$f" "$ETC/$f"
    done
fi
if [ ! -e "$SECRETS" ]; then
    install -m 0600 -o root -g root "$HERE/siaran-edge.env.example" "$SECRETS"
fi
chown -R root:"$USER_NAME" "$ETC"
find "$ETC" -type d -exec chmod 0750 {} +
find "$ETC" -type f -exec chmod 0640 {} +
# read by systemd (as root) through EnvironmentFile=, not by the service user
chown root:root "$SECRETS"
chmod 0600 "$SECRETS"

# 4. State: systemd creates it too (StateDirectory=); made here so check-config finds it.
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE"

# 5. ICMP echo without privileges (the unreachable rule's cross-check): the service group
#    must be inside net.ipv4.ping_group_range. Widen the range only if it is not.
read -r lo hi </proc/sys/net/ipv4/ping_group_range
if ((GID < lo || GID > hi)); then
    if ((lo > hi)); then # "1 0": no group may ping yet
        lo=$GID hi=$GID
    fi
    lo=$((GID < lo ? GID : lo)) hi=$((GID > hi ? GID : hi))
    say "allowing unprivileged ICMP for groups $lo-$hi ($SYSCTL)"
    sed "s|^net.ipv4.ping_group_range.*|net.ipv4.ping_group_range = $lo $hi|" \
        "$HERE/99-siaran-edge-ping.conf" >"$SYSCTL"
    chmod 0644 "$SYSCTL"
    sysctl -q -p "$SYSCTL" || say "could not apply $SYSCTL now; it applies at boot"
fi

# 6. The unit.
install -m 0644 -o root -g root "$HERE/siaran-edge.service" "$UNIT"
systemd_running=no
if [ -d /run/systemd/system ]; then
    systemd_running=yes
    systemctl daemon-reload
fi

# 7. Never start on a config that does not pass: check it as the service user, with the
#    secrets systemd would hand the service.
say "checking $CONFIG as $USER_NAME"
if ! (
    set -a
    # shellcheck source=/dev/null
    . "$SECRETS"
    set +a
    cd /
    exec setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
        "$VENV/bin/siaran-edge" check-config "$CONFIG"
); then
    say "the configuration has problems: the service is installed but not enabled or started."
    say "Fix $CONFIG (and $SECRETS), then run this script again."
    exit 1
fi

if [ "$systemd_running" = no ]; then
    say "systemd is not running here: unit installed in $UNIT, not enabled"
    exit 0
fi
systemctl enable --quiet siaran-edge.service
if [ "$start" = yes ]; then
    say "(re)starting siaran-edge"
    systemctl restart siaran-edge.service
    systemctl --no-pager --lines=0 status siaran-edge.service || true
else
    say "enabled; not started (--no-start)"
fi
