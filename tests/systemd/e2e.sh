#!/bin/bash
# e2e.sh - fetchd end-to-end checks under a real systemd 252 + journald.
#
# Runs INSIDE the container that run-in-systemd.sh boots (as root, cwd = the
# payload dir holding fetchd, httpd and fetchd.service); run-e2e.sh on the
# host puts it there.  It installs the shipped unit unchanged, drives it
# with systemctl and journalctl, and prints one "ok N - ..." or
# "not ok N - ..." line per check, "# ..." diagnostics, and finally the
# plain line "N passed, N failed".  Exit status 0 only if nothing failed.
#
# Two drop-ins are added for observation only:
#   50-e2e-exit.conf      ExecStopPost=+ records $SERVICE_RESULT,
#                         $EXIT_CODE and $EXIT_STATUS of each stop (an
#                         inactive unit may be garbage-collected at once,
#                         after which `systemctl show` reports defaults)
#   60-e2e-watchdog.conf  WatchdogSec=2 ... for the watchdog checks only
set -u
umask 022
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C

UNIT=fetchd.service
CONF=/etc/fetchd/fetchd.json # replaced by the unit's --config below
BIN=/usr/local/bin/fetchd    # replaced by the unit's ExecStart= below
RECORDS=/var/lib/fetchd/records.jsonl
EXITFILE=/run/fetchd-e2e.exit
DROPIN_DIR=/etc/systemd/system/$UNIT.d
OUT=${HARNESS_OUT:-/tmp}

N=0
PASSED=0
FAILED=0
DIAG=()

diag() { DIAG+=("$*"); }
check_result() { # $1 = 0 for ok, $2 = description; prints pending diags
    N=$((N + 1))
    if [ "$1" = 0 ]; then
        PASSED=$((PASSED + 1))
        echo "ok $N - $2"
    else
        FAILED=$((FAILED + 1))
        echo "not ok $N - $2"
    fi
    local d
    for d in "${DIAG[@]}"; do
        echo "#   $d"
    done
    DIAG=()
}

prop() { systemctl show -p "$1" --value "$UNIT" 2>/dev/null; }

# wait_for SECONDS COMMAND... : poll every 0.2 s until COMMAND succeeds.
wait_for() {
    local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
    shift
    while :; do
        "$@" && return 0
        [ $(($(date +%s%N) / 1000000)) -ge $deadline ] && return 1
        sleep 0.2
    done
}

# Journal entries of the unit as JSON lines; extra args are matches.
jentries() { journalctl -u "$UNIT" -o json --no-pager "$@" 2>/dev/null | grep '^{'; }
jcount() { jentries "$@" | grep -c '^{'; }
# jfield JSON_LINE NAME: the string value of field NAME ("" if absent)
jfield() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }

status_text() { prop StatusText; }
status_starts() { case $(status_text) in "$1"*) return 0 ;; esac; return 1; }
event_count_above() { [ "$(jcount FETCHD_EVENT="$1")" -gt "$2" ]; }
record_lines() { if [ -f "$RECORDS" ]; then wc -l <"$RECORDS"; else echo 0; fi; }
lines_above() { [ "$(record_lines)" -gt "$1" ]; }

write_config() { # $1 = "with_added" to add the fourth endpoint
    local added=
    if [ "${1:-}" = with_added ]; then
        added=',
    "added": {"url": "http://127.0.0.1:'"$PORT"'/added"}'
    fi
    mkdir -p "${CONF%/*}"
    cat >"$CONF.tmp" <<EOF
{
  "defaults": {"interval": "1s", "timeout": "5s", "sinks": ["out"]},
  "limits": {"shutdown_grace": "5s"},
  "sinks": {"out": {"type": "file", "path": "$RECORDS"}},
  "endpoints": {
    "healthy": {"url": "http://127.0.0.1:$PORT/healthy"},
    "slow": {"url": "http://127.0.0.1:$PORT/slow?delay=700"},
    "closed": {"url": "http://127.0.0.1:1/closed"}$added
  }
}
EOF
    chmod 0644 "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

# A check that needs the daemon running fails at once (with a reason) when
# it is not, instead of waiting out every poll.
require_active() {
    local a
    a=$(prop ActiveState)
    [ "$a" = active ] && return 0
    diag "fetchd is not running (ActiveState=$a Result=$(prop Result)); check skipped"
    return 1
}

# systemctl with a bound: a start that never sees READY=1 would otherwise
# wait for TimeoutStartSec= (90 s by default).
sctl() { timeout 30 systemctl "$@"; }

stop_unit() {
    sctl stop "$UNIT" >/dev/null 2>&1 || {
        systemctl kill -s KILL "$UNIT" >/dev/null 2>&1
        sctl stop "$UNIT" >/dev/null 2>&1
    }
    systemctl reset-failed "$UNIT" >/dev/null 2>&1
}

final_report() {
    if [ "$FAILED" -gt 0 ]; then
        echo "# ---- systemctl status $UNIT"
        systemctl status "$UNIT" --no-pager -n 0 2>&1 | sed 's/^/#   /'
        echo "# ---- journalctl -u $UNIT (last 60)"
        journalctl -u "$UNIT" --no-pager -n 60 -o short-monotonic 2>&1 | sed 's/^/#   /'
    fi
    if [ -f "$RECORDS" ]; then
        cp "$RECORDS" "$OUT/records.jsonl" 2>/dev/null
    fi
    journalctl -u "$UNIT" --no-pager -o verbose >"$OUT/fetchd-journal-verbose.txt" 2>&1
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
    exit
}

# ================================================================= setup

r=0
for f in fetchd httpd fetchd.service; do
    [ -f "$f" ] || { diag "payload lacks $f"; r=1; }
done
# Install the binary where the unit's ExecStart= expects it and write the
# config where its --config points.
unit_paths() {
    local line arg prev='' spec
    line=$(sed -n 's/^ExecStart=//p' fetchd.service | tail -n 1)
    set -f
    set -- $line
    set +f
    [ $# -gt 0 ] || return 1
    BIN=$1
    while [[ $BIN == [-@+!:]* ]]; do BIN=${BIN:1}; done
    for arg in "$@"; do
        case $prev in --config | -c) CONF=$arg ;; esac
        case $arg in --config=*) CONF=${arg#--config=} ;; esac
        prev=$arg
    done
    for spec in E:/etc S:/var/lib t:/run; do
        CONF=${CONF//%${spec%%:*}/${spec#*:}}
    done
    [[ $BIN == /* ]] && [[ $CONF == /* ]]
}
if [ $r = 0 ]; then
    if unit_paths; then
        diag "unit: ExecStart binary $BIN, config $CONF"
    else
        diag "cannot read ExecStart= of fetchd.service: binary '$BIN' config '$CONF'"
        r=1
    fi
    install -D -m 0755 fetchd "$BIN"
    install -m 0755 httpd /usr/local/bin/httpd
    install -m 0644 fetchd.service "/etc/systemd/system/$UNIT"
    missing=$(ldd "$BIN" 2>&1 | grep 'not found')
    [ -z "$missing" ] || { diag "fetchd: shared libraries not found in the tree: $missing"; r=1; }
    systemd-run --quiet --unit=testhttpd -p Type=exec \
        /usr/local/bin/httpd --port-file /run/httpd.port || r=1
    if wait_for 5 test -s /run/httpd.port; then
        PORT=$(cat /run/httpd.port)
        diag "httpd listening on 127.0.0.1:$PORT"
    else
        diag "httpd wrote no port file: $(systemctl status testhttpd --no-pager 2>&1 | tail -n 5)"
        r=1
    fi
fi
check_result $r "setup: fetchd, httpd and the unit installed; test HTTP server up"
[ $r = 0 ] || final_report

# Static check of the shipped unit, now that its binaries exist.
vout=$(systemd-analyze verify --man=no "/etc/systemd/system/$UNIT" 2>&1)
r=0
if [ -n "$vout" ]; then
    r=1
    while IFS= read -r l; do diag "$l"; done <<<"$vout"
fi
check_result $r "unit: systemd-analyze verify prints nothing"

mkdir -p "$DROPIN_DIR"
cat >"$DROPIN_DIR/50-e2e-exit.conf" <<'EOF'
# e2e observation only: how did the main process end?
[Service]
ExecStopPost=+/bin/sh -c 'echo "$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS" >/run/fetchd-e2e.exit'
EOF
systemctl daemon-reload
write_config

# ======================================================================
# a. `systemctl start` returns only after READY=1 (sent with STATUS=)
r=0
t0=$(date +%s%N)
if sctl start "$UNIT"; then
    st=$(status_text)
    active=$(prop ActiveState)
    type=$(prop Type)
    diag "start took $((($(date +%s%N) - t0) / 1000000)) ms; Type=$type ActiveState=$active"
    diag "StatusText='$st'"
    [ "$type" = notify ] || { diag "the unit is not Type=notify"; r=1; }
    [ "$active" = active ] || r=1
    [[ $st =~ ^[0-9]+\ endpoints?: ]] || { diag "StatusText does not start with '<N> endpoints:'"; r=1; }
else
    r=1
    diag "systemctl start failed or did not return within 30 s"
    while IFS= read -r l; do diag "$l"; done < <(systemctl status "$UNIT" --no-pager -n 5 2>&1 | tail -n 8)
    stop_unit
fi
check_result $r "a. systemctl start returns after READY=1: active, STATUS='<N> endpoints: ...'"
PID=$(prop MainPID)

# b. systemctl status shows the STATUS line
r=0
sline=$(systemctl status "$UNIT" --no-pager -n 0 2>&1 | grep -E '^ *Status: ')
if [ -n "$sline" ]; then
    diag "${sline#"${sline%%[! ]*}"}"
else
    r=1
    diag "no 'Status:' line in systemctl status"
fi
check_result $r "b. systemctl status shows the Status: line"

# Give the schedules a few rounds (1 s interval) before the next checks.
sleep 2.5

# c. reload applies a change, same PID
r=0
if require_active; then
    n0=$(jcount FETCHD_EVENT=reloaded)
    write_config with_added
    if ! sctl reload "$UNIT"; then
        r=1
        diag "systemctl reload failed"
    fi
    if ! wait_for 10 event_count_above reloaded "$n0"; then
        r=1
        diag "no new FETCHD_EVENT=reloaded journal entry within 10 s"
    fi
    if ! wait_for 10 status_starts "4 endpoints"; then
        r=1
        diag "StatusText does not show 4 endpoints: '$(status_text)'"
    fi
    pid=$(prop MainPID)
    [ "$pid" = "$PID" ] && [ "$pid" != 0 ] || { r=1; diag "MainPID changed: $PID -> $pid"; }
    [ "$(prop ActiveState)" = active ] || { r=1; diag "ActiveState=$(prop ActiveState)"; }
else
    r=1
fi
check_result $r "c. systemctl reload applies an added endpoint (journal 'reloaded', STATUS 4 endpoints, same PID)"

# d. a broken config on reload keeps the daemon running on the old one
r=0
if require_active; then
    n0=$(jcount FETCHD_EVENT=reload_failed)
    printf '{"defaults": {"interval": "1s",\n' >"$CONF"
    sctl reload "$UNIT" || { r=1; diag "systemctl reload failed"; }
    if wait_for 10 event_count_above reload_failed "$n0"; then
        e=$(jentries FETCHD_EVENT=reload_failed | tail -n 1)
        diag "reload_failed entry: PRIORITY=$(jfield "$e" PRIORITY) MESSAGE=$(jfield "$e" MESSAGE)"
    else
        r=1
        diag "no new FETCHD_EVENT=reload_failed journal entry within 10 s"
    fi
    if ! wait_for 5 status_starts "reload failed"; then
        r=1
        diag "StatusText does not start with 'reload failed': '$(status_text)'"
    else
        diag "StatusText='$(status_text)'"
    fi
    pid=$(prop MainPID)
    [ "$pid" = "$PID" ] || { r=1; diag "MainPID changed: $PID -> $pid"; }
    [ "$(prop ActiveState)" = active ] || { r=1; diag "ActiveState=$(prop ActiveState)"; }
    l0=$(record_lines)
    if ! wait_for 5 lines_above "$l0"; then
        r=1
        diag "no new records in $RECORDS within 5 s after the failed reload ($l0 lines)"
    fi
else
    r=1
fi
check_result $r "d. a broken config on reload: journal 'reload_failed', STATUS 'reload failed...', still active, same PID, records still written"

# d'. the next good reload clears "reload failed"
r=0
if require_active; then
    n0=$(jcount FETCHD_EVENT=reloaded)
    write_config with_added
    sctl reload "$UNIT" || { r=1; diag "systemctl reload failed"; }
    wait_for 10 event_count_above reloaded "$n0" ||
        { r=1; diag "no new FETCHD_EVENT=reloaded journal entry within 10 s"; }
    wait_for 5 status_starts "4 endpoints" ||
        { r=1; diag "StatusText='$(status_text)'"; }
    [ "$(prop MainPID)" = "$PID" ] || { r=1; diag "MainPID changed: $PID -> $(prop MainPID)"; }
else
    r=1
fi
check_result $r "d. a good config after a failed reload clears 'reload failed' from STATUS"

# e. structured warnings for a failing endpoint, none for a healthy one
r=0
if require_active; then
    has_closed_warning() { [ "$(jcount FETCHD_ENDPOINT=closed -p warning)" -gt 0 ]; }
    if wait_for 10 has_closed_warning; then
        total=0
        while IFS= read -r e; do
            total=$((total + 1))
            ep=$(jfield "$e" FETCHD_ENDPOINT)
            pr=$(jfield "$e" PRIORITY)
            kind=$(jfield "$e" FETCHD_ERROR_KIND)
            ev=$(jfield "$e" FETCHD_EVENT)
            [ $total -le 3 ] && diag "entry: FETCHD_EVENT=$ev PRIORITY=$pr FETCHD_ERROR_KIND=$kind"
            if [ "$ep" != closed ] || ! [[ $pr =~ ^[0-7]$ ]] || [ "$pr" -gt 4 ] || [ -z "$kind" ]; then
                r=1
                diag "bad entry (FETCHD_ENDPOINT=$ep PRIORITY=$pr FETCHD_ERROR_KIND=$kind FETCHD_EVENT=$ev): $(jfield "$e" MESSAGE)"
            fi
        done < <(jentries FETCHD_ENDPOINT=closed -p warning)
        diag "$total entries at priority <= warning"
    else
        r=1
        diag "journalctl -u $UNIT FETCHD_ENDPOINT=closed -p warning: nothing within 10 s"
        diag "all FETCHD_ENDPOINT=closed entries: $(jcount FETCHD_ENDPOINT=closed)"
    fi
else
    r=1
fi
check_result $r "e. journal: FETCHD_ENDPOINT=closed (127.0.0.1:1) -p warning has entries, each with PRIORITY<=4 and FETCHD_ERROR_KIND"

r=0
if require_active; then
    nh=$(jcount FETCHD_ENDPOINT=healthy -p warning)
    if [ "$nh" != 0 ]; then
        r=1
        diag "$nh entries, e.g. $(jentries FETCHD_ENDPOINT=healthy -p warning | head -n 1 | cut -c1-300)"
    fi
else
    r=1
fi
check_result $r "e. journal: FETCHD_ENDPOINT=healthy -p warning returns nothing"

# f. systemctl stop: clean exit, whole records
r=0
rm -f "$EXITFILE"
t0=$(date +%s%N)
if sctl stop "$UNIT"; then
    diag "stop took $((($(date +%s%N) - t0) / 1000000)) ms"
else
    r=1
    diag "systemctl stop failed or did not return within 30 s"
fi
res=$(prop Result)
ems=$(prop ExecMainStatus)
diag "Result=$res ExecMainStatus=$ems ActiveState=$(prop ActiveState)"
[ "$res" = success ] && [ "$ems" = 0 ] || r=1
if [ -s "$EXITFILE" ]; then
    read -r sres scode sstatus <"$EXITFILE"
    diag "ExecStopPost saw SERVICE_RESULT=$sres EXIT_CODE=$scode EXIT_STATUS=$sstatus"
    [ "$sres" = success ] && [ "$scode" = exited ] && [ "$sstatus" = 0 ] || r=1
else
    r=1
    diag "ExecStopPost= did not run ($EXITFILE missing)"
fi
[ "$(jcount FETCHD_EVENT=stopped)" -gt 0 ] || diag "(no FETCHD_EVENT=stopped entry in the journal)"
check_result $r "f. systemctl stop: Result=success, main process exited with status 0"

r=0
if [ ! -s "$RECORDS" ]; then
    r=1
    diag "$RECORDS is missing or empty"
else
    lines=$(wc -l <"$RECORDS")
    diag "$lines records"
    if [ "$(tail -c 1 "$RECORDS" | od -An -tx1 | tr -d ' ')" != 0a ]; then
        r=1
        diag "the file does not end with a newline"
    fi
    if command -v python3 >/dev/null; then
        bad=$(python3 - "$RECORDS" <<'EOF'
import json, sys
for n, line in enumerate(open(sys.argv[1], 'rb'), 1):
    try:
        if not isinstance(json.loads(line), dict):
            raise ValueError("not an object")
    except ValueError as e:
        print("line %d: %s: %.120r" % (n, e, line))
        break
EOF
)
    else
        # no python3 in the tree: each line must look like one record
        bad=$( {
            grep -n -v -E '^\{"endpoint":.*\}$' "$RECORDS"
            grep -n -F '}{"endpoint":' "$RECORDS"
        } | head -n 1 | cut -c1-160)
    fi
    if [ -n "$bad" ]; then
        r=1
        diag "not a whole JSON object: $bad"
    fi
fi
check_result $r "f. every line of records.jsonl is a whole JSON object and the file ends with a newline"

# g. the hardened unit can write its StateDirectory
r=0
if [ -s /var/lib/private/fetchd/records.jsonl ]; then
    diag "DynamicUser: $(ls -ld /var/lib/fetchd | sed 's/.* \/var/\/var/'); owner $(stat -c '%u:%g %a' /var/lib/private/fetchd/records.jsonl)"
elif [ -s /var/lib/fetchd/records.jsonl ] && [ ! -L /var/lib/fetchd ]; then
    diag "owner $(stat -c '%U(%u) %a' /var/lib/fetchd/records.jsonl)"
else
    r=1
    diag "no non-empty records.jsonl under /var/lib/fetchd or /var/lib/private/fetchd"
fi
check_result $r "g. the unit wrote records.jsonl in its StateDirectory"

# h. the watchdog keeps a live daemon and restarts a stalled one
cat >"$DROPIN_DIR/60-e2e-watchdog.conf" <<'EOF'
[Service]
WatchdogSec=2
TimeoutAbortSec=2
Restart=on-failure
RestartSec=1
EOF
systemctl daemon-reload
r=0
if sctl start "$UNIT"; then
    WPID=$(prop MainPID)
    nr0=$(prop NRestarts)
    diag "WatchdogUSec=$(prop WatchdogUSec) MainPID=$WPID NRestarts=$nr0"
    sleep 3.5
    pid=$(prop MainPID)
    nr=$(prop NRestarts)
    if [ "$pid" != "$WPID" ] || [ "$nr" != "$nr0" ] || [ "$(prop ActiveState)" != active ]; then
        r=1
        diag "after 3.5 s: MainPID=$pid NRestarts=$nr ActiveState=$(prop ActiveState) Result=$(prop Result)"
    fi
else
    r=1
    diag "systemctl start with WatchdogSec=2 failed or did not return within 30 s"
    stop_unit
fi
check_result $r "h. with WatchdogSec=2 the daemon keeps the watchdog fed (no restart in 3.5 s)"

r=0
WPID=0
require_active && WPID=$(prop MainPID)
nr0=$(prop NRestarts)
restarted() {
    local p
    p=$(prop MainPID)
    [ "$(prop NRestarts)" -gt "$nr0" ] && [ "$(prop ActiveState)" = active ] &&
        [ "$p" != 0 ] && [ "$p" != "$WPID" ]
}
if [ "$WPID" != 0 ] && kill -STOP "$WPID"; then
    t0=$(date +%s%N)
    if wait_for 15 restarted; then
        diag "restarted after $((($(date +%s%N) - t0) / 1000000)) ms: MainPID $WPID -> $(prop MainPID), NRestarts=$(prop NRestarts)"
    else
        r=1
        diag "after 15 s: MainPID=$(prop MainPID) NRestarts=$(prop NRestarts) ActiveState=$(prop ActiveState)"
    fi
    wd=$(journalctl -u "$UNIT" --no-pager -o cat 2>/dev/null | grep -c 'Watchdog timeout')
    diag "systemd logged 'Watchdog timeout' $wd time(s)"
    [ "$wd" -gt 0 ] || r=1
else
    r=1
fi
check_result $r "h. the watchdog restarts a SIGSTOPped daemon (NRestarts>=1, active, new PID)"

stop_unit
rm -f "$DROPIN_DIR/60-e2e-watchdog.conf"
systemctl daemon-reload
systemctl stop testhttpd >/dev/null 2>&1

final_report
