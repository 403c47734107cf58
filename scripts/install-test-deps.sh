#!/usr/bin/env bash
# Install the Debian packages that rdbss's integration tests need (Debian 12, run as root).
#
#   bash scripts/install-test-deps.sh
#
# - Idempotent: when every needed binary is already present, apt is not touched at all.
# - Non-interactive: apt-get update once, then install with --no-install-recommends.
# - Fails loudly (non-zero exit, message on stderr) if apt fails or a binary is still missing.
# - Never leaves the *system* smbd/nmbd/winbindd/sshd running: daemon start-up is blocked during
#   the install with a temporary /usr/sbin/policy-rc.d (exit 101) when the image has none, and any
#   system daemon that started anyway is stopped by the pid in its system pid file.
# - Python packages are NOT installed here; the caller runs pip.
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

if [[ "$(id -u)" -ne 0 ]]; then
    die "must run as root (apt-get install and the smbd/sshd fixtures need it)"
fi

# "binary (or header) to look for" -> "Debian package that provides it".
declare -A NEEDED=(
    [/usr/sbin/smbd]=samba
    [/usr/bin/smbpasswd]=samba-common-bin
    [/usr/bin/testparm]=samba-common-bin
    [/usr/bin/smbclient]=smbclient
    [/usr/sbin/sshd]=openssh-server
    [/usr/bin/ssh]=openssh-client
    [/usr/bin/sftp]=openssh-client
    [/usr/bin/ssh-keygen]=openssh-client
    [/usr/bin/fusermount3]=fuse3
    [/usr/bin/rclone]=rclone
    [/usr/bin/sshfs]=sshfs
    [/usr/bin/rsync]=rsync
    [/usr/bin/git]=git
    [/usr/sbin/ip]=iproute2
    [/usr/bin/ss]=iproute2
    [/usr/bin/tcpdump]=tcpdump
    [/usr/bin/chromium]=chromium # headless: renders an experiment's report.html in the tests
    # pip builds pyfuse3 (the mount's binding) against libfuse3's headers
    [/usr/include/fuse3/fuse_lowlevel.h]=libfuse3-dev
    [/usr/bin/pkg-config]=pkg-config
    [/usr/bin/gcc]=gcc
)
# What the brief asks for, always installed together so a fresh machine gets all of them.
PACKAGES=(samba smbclient openssh-server openssh-client fuse3 libfuse3-dev pkg-config gcc rclone sshfs
    rsync git iproute2 tcpdump chromium)

missing_binaries() {
    local bin
    for bin in "${!NEEDED[@]}"; do
        if [[ "$bin" == *.h ]]; then # a header: present is enough
            [[ -e "$bin" ]] || printf '%s\n' "$bin"
            continue
        fi
        # Accept the binary anywhere on PATH as well as at its Debian location.
        if [[ ! -x "$bin" ]] && ! command -v "$(basename "$bin")" >/dev/null 2>&1; then
            printf '%s\n' "$bin"
        fi
    done
}

# Stop a system daemon recorded in a pid file, by its pid only, if it is really that daemon.
stop_system_daemon() {
    local pidfile=$1 comm=$2 pid i
    [[ -r "$pidfile" ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile" || true)
    [[ -n "$pid" ]] || return 0
    [[ -r "/proc/$pid/comm" ]] || return 0
    # comm may be e.g. "smbd" or "sshd"; refuse to signal an unrelated process that reused the pid.
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != "$comm"* ]]; then
        return 0
    fi
    log "system $comm (pid $pid from $pidfile) is running after the install; stopping it"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "system $comm (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_system_daemons() {
    stop_system_daemon /run/samba/smbd.pid smbd
    stop_system_daemon /run/samba/nmbd.pid nmbd
    stop_system_daemon /run/samba/winbindd.pid winbindd
    stop_system_daemon /run/samba/samba-bgqd.pid samba-bgqd
    stop_system_daemon /run/sshd.pid sshd
}

mapfile -t MISSING < <(missing_binaries | sort)
if [[ ${#MISSING[@]} -eq 0 ]]; then
    log "all needed binaries are present; skipping apt"
    stop_system_daemons
    exit 0
fi
log "missing: ${MISSING[*]}"

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu only"

# Block service start-up during the install when the image does not already do so.
TEMP_POLICY=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    TEMP_POLICY=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# temporary, written by rdbss scripts/install-test-deps.sh\nexit 101\n' \
        >"$TEMP_POLICY"
    chmod 0755 "$TEMP_POLICY"
    log "wrote a temporary $TEMP_POLICY so apt does not start smbd/sshd"
fi
cleanup() {
    if [[ -n "$TEMP_POLICY" ]]; then
        rm -f "$TEMP_POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log "apt-get update"
if ! timeout 900 apt-get "${APT_OPTS[@]}" update; then
    die "apt-get update failed (see the output above)"
fi
log "apt-get install ${PACKAGES[*]}"
if ! timeout 1800 apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${PACKAGES[@]}"; then
    die "apt-get install ${PACKAGES[*]} failed (see the output above)"
fi

stop_system_daemons

mapfile -t STILL_MISSING < <(missing_binaries | sort)
if [[ ${#STILL_MISSING[@]} -ne 0 ]]; then
    die "still missing after apt-get install: ${STILL_MISSING[*]}"
fi
log "done"
