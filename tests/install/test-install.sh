#!/usr/bin/env bash
# tests/install/test-install.sh - `make install` and `make uninstall` into a
# temporary DESTDIR, with PREFIX=/usr: every file where it belongs with the
# right mode, the services on PATH only as pizza-<service>, man pages that
# render without warnings and document every option (and read sensibly from
# the source tree: no @PREFIX@), systemd units that are filled in, hardened
# and Type=notify (and pass `systemd-analyze verify` where it exists), the
# storefront with exactly the files its page loads, example configuration
# the programs accept, an installed program that runs, and an uninstall that
# leaves nothing of ours.  Needs no root and touches nothing outside its
# temporary folder (and build/, which `make all` may update).
#
# Usage: tests/install/test-install.sh   (from anywhere; `make test-install`)
# The last line is "install: N passed, M failed"; the exit status is 1 if
# anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 1

MAKE=${MAKE:-make}
# Until the top Makefile includes install/pizza.mk, name both files.
if grep -Eq '^[[:space:]]*-?include[[:space:]]+install/pizza\.mk' Makefile; then
	MKFILES=()
else
	MKFILES=(-f Makefile -f install/pizza.mk)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pizza-install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
D=$TMP/root
P=/usr
R=$D$P
MAN_ROOT=$R/share/man
DOC=$R/share/doc/pizza
UNITS=$R/lib/systemd/system

pass=0
fail=0
ok() { pass=$((pass + 1)); }
has_line() { grep -qxF -- "$2" "$1"; }
lacks() { ! grep -qF -- "$2" "$1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# check DESCRIPTION COMMAND...: one check that COMMAND succeeds
check() {
	local what=$1
	shift
	if "$@"; then ok; else bad "$what"; fi
}

# The services by their short names; installed as pizza-<service>.
SERVICES="order-service order-executor order-history notifier"
PROGS="phone-sim pizza-admin"
for s in $SERVICES; do PROGS="$PROGS pizza-$s"; done
WEB=$R/share/pizza/web
WEB_FILES="index.html app.js style.css node_modules/mqtt/dist/mqtt.min.js"
EXAMPLES="order-service.conf order-executor.conf order-history.conf notifier.conf phone-sim.conf service.env"
UNIT_FILES="pizza-order-service.service pizza-order-executor@.service pizza-order-history.service pizza-notifier.service"

# ---- install -----------------------------------------------------------------
if ! "$MAKE" --no-print-directory "${MKFILES[@]}" install PREFIX=$P DESTDIR="$D" >"$TMP/install.log" 2>&1; then
	cat "$TMP/install.log"
	bad "make install PREFIX=$P DESTDIR=$D failed"
	echo "install: $pass passed, $fail failed"
	exit 1
fi
ok

# ---- programs ----------------------------------------------------------------
for p in $PROGS; do
	check "$P/bin/$p is not an executable file" test -f "$R/bin/$p" -a -x "$R/bin/$p"
	check "$P/bin/$p is not mode 755" test "$(stat -c %a "$R/bin/$p" 2>/dev/null)" = 755
done
version_ok() {
	local out
	out=$("$R/bin/$1" --version 2>&1) || return 1
	[[ $out =~ (^|/)$1\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "  got: $out"; return 1; }
}
check "installed pizza-order-service --version" version_ok pizza-order-service
check "installed phone-sim --version" version_ok phone-sim
check "installed pizza-admin --version" version_ok pizza-admin
for s in $SERVICES; do
	check "a generic $P/bin/$s is installed (the services are pizza-$s)" test ! -e "$R/bin/$s"
done

# ---- man pages ---------------------------------------------------------------
MANS="man1/phone-sim.1 man1/pizza-admin.1 man8/pizza-services.8"
for s in $SERVICES; do MANS="$MANS man8/pizza-$s.8"; done
for m in $MANS; do
	check "$P/share/man/$m missing or not mode 644" test "$(stat -c %a "$MAN_ROOT/$m" 2>/dev/null)" = 644
done
for s in $SERVICES; do
	check "man8/pizza-$s.8 is not '.so man8/pizza-services.8'" \
		test "$(cat "$MAN_ROOT/man8/pizza-$s.8" 2>/dev/null)" = ".so man8/pizza-services.8"
done
for m in man1/phone-sim.1 man1/pizza-admin.1 man8/pizza-services.8; do
	check "$m still holds @PREFIX@" lacks "$MAN_ROOT/$m" @PREFIX@
	check "$m does not name $P/share/doc/pizza" grep -q "$P/share/doc/pizza" "$MAN_ROOT/$m"
	check "the source install/man/${m#*/} holds @PREFIX@ (man shows it)" lacks "install/man/${m#*/}" @PREFIX@
	if command -v groff >/dev/null 2>&1; then
		groff -man -Tutf8 -ww -z "$MAN_ROOT/$m" >"$TMP/groff.out" 2>&1
		check "groff -ww warns about $m: $(head -3 "$TMP/groff.out")" test ! -s "$TMP/groff.out"
	fi
done
if command -v man >/dev/null 2>&1; then
	# .so pages resolve from the top of the man tree, as man(1) reads them
	for m in $MANS; do
		(cd "$MAN_ROOT" && LC_ALL=C MANWIDTH=80 MANPAGER=cat PAGER=cat man -l "$m" >"$TMP/man.out" 2>"$TMP/man.err")
		rc=$?
		check "man -l $m failed or warned: $(head -3 "$TMP/man.err")" test $rc = 0 -a ! -s "$TMP/man.err"
		check "man -l $m rendered nothing" grep -q "^NAME" "$TMP/man.out"
	done
	# rendered, the installed pages name the installed paths, the sources the default prefix's
	for m in man1/phone-sim.1 man1/pizza-admin.1 man8/pizza-services.8; do
		(cd "$MAN_ROOT" && LC_ALL=C MANWIDTH=200 MANPAGER=cat PAGER=cat man -l "$m" 2>/dev/null) >"$TMP/man.out"
		check "installed $m does not show $P/share/doc/pizza/" grep -q "$P/share/doc/pizza/" "$TMP/man.out"
		check "installed $m shows /usr/local" lacks "$TMP/man.out" /usr/local/
		LC_ALL=C MANWIDTH=200 MANPAGER=cat PAGER=cat man -l "install/man/${m#*/}" >"$TMP/man.out" 2>/dev/null
		check "man install/man/${m#*/} does not show /usr/local/share/doc/pizza/" \
			grep -q /usr/local/share/doc/pizza/ "$TMP/man.out"
		check "man install/man/${m#*/} shows @PREFIX@" lacks "$TMP/man.out" @PREFIX@
	done
	(cd "$MAN_ROOT" && LC_ALL=C MANWIDTH=200 MANPAGER=cat PAGER=cat man -l man8/pizza-services.8 2>/dev/null) >"$TMP/man.out"
	check "installed pizza-services.8 does not show the storefront's $P/share/pizza/web" \
		grep -q "$P/share/pizza/web" "$TMP/man.out"
fi

# Every option a program's --help lists is documented in its man page.
# $1: man page, $2...: the program and arguments that print --help
documents_options() {
	local page=$1 opt missing=""
	shift
	for opt in $("$@" --help | sed -n 's/^ *\(-[a-zA-Z], \)\{0,1\}--\([a-z][a-z-]*\).*/\2/p'); do
		grep -qF -- "\\-\\-${opt//-/\\-}" "$page" || missing="$missing --$opt"
	done
	[ -z "$missing" ] || { echo "  not in $(basename "$page"):$missing"; return 1; }
}
for s in $SERVICES; do
	check "pizza-services.8 misses options of pizza-$s" documents_options "$MAN_ROOT/man8/pizza-services.8" \
		"$R/bin/pizza-$s"
done
for c in order watch history token load; do
	check "phone-sim.1 misses options of phone-sim $c" documents_options "$MAN_ROOT/man1/phone-sim.1" "$R/bin/phone-sim" "$c"
done
for c in "user add" "device list" "token revoke" broker-init; do
	# shellcheck disable=SC2086 # a command and its subcommand
	check "pizza-admin.1 misses options of pizza-admin $c" documents_options "$MAN_ROOT/man1/pizza-admin.1" \
		"$R/bin/pizza-admin" $c
done

# ---- systemd units -----------------------------------------------------------
HARDENING="Type=notify
WatchdogSec=30
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
DynamicUser=yes
Restart=on-failure
RestartSec=2
TimeoutStopSec=40
After=network-online.target mosquitto.service
Wants=network-online.target mosquitto.service"
for u in $UNIT_FILES; do
	f=$UNITS/$u
	check "$P/lib/systemd/system/$u missing or not mode 644" test "$(stat -c %a "$f" 2>/dev/null)" = 644
	[ -f "$f" ] || continue
	check "$u still holds @PREFIX@" lacks "$f" @PREFIX@
	while IFS= read -r line; do
		check "$u lacks the line '$line'" has_line "$f" "$line"
	done <<<"$HARDENING"
	svc=${u#pizza-}
	svc=${svc%.service}
	svc=${svc%@}
	check "$u lacks EnvironmentFile=-/etc/pizza/$svc.env" has_line "$f" "EnvironmentFile=-/etc/pizza/$svc.env"
	check "$u lacks LoadCredential=mqtt-password:/etc/pizza/$svc.pass" \
		has_line "$f" "LoadCredential=mqtt-password:/etc/pizza/$svc.pass"
	check "$u does not start $P/bin/pizza-$svc --config /etc/pizza/$svc.conf" \
		grep -q "^ExecStart=$P/bin/pizza-$svc --config /etc/pizza/$svc.conf" "$f"
	check "$u lacks Documentation=man:pizza-$svc(8) man:pizza-services(8)" \
		has_line "$f" "Documentation=man:pizza-$svc(8) man:pizza-services(8)"
	# shellcheck disable=SC2016 # the unit's literal ${CREDENTIALS_DIRECTORY}
	check "$u does not pass the mqtt-password credential" \
		grep -qF -- '--mqtt-password-file ${CREDENTIALS_DIRECTORY}/mqtt-password' "$f"
	case $svc in
	order-executor)
		check "$u does not pass --id %i" grep -qF -- '--id %i' "$f" ;;
	order-service)
		check "$u does not serve the storefront from $P/share/pizza/web" \
			grep -qF -- "--web-root $P/share/pizza/web" "$f" ;;&
	*)
		check "$u lacks StateDirectory=pizza-$svc" has_line "$f" "StateDirectory=pizza-$svc"
		check "$u does not keep its store in /var/lib/pizza-$svc" \
			grep -qF -- "--db /var/lib/pizza-$svc/$svc.db" "$f" ;;
	esac
done
if command -v systemd-analyze >/dev/null 2>&1; then
	# Verify copies whose ExecStart names the staged programs (verify checks
	# they exist), with an instance of the executor template.
	mkdir -p "$TMP/verify"
	for u in $UNIT_FILES; do
		sed "s|=$P/bin/|=$R/bin/|" "$UNITS/$u" >"$TMP/verify/${u/@./@1.}"
	done
	(cd "$TMP/verify" && systemd-analyze verify --man=no ./*.service) >"$TMP/verify.out" 2>&1
	rc=$?
	check "systemd-analyze verify: $(head -5 "$TMP/verify.out")" test $rc = 0 -a ! -s "$TMP/verify.out"
fi

# ---- the storefront ----------------------------------------------------------
for w in $WEB_FILES; do
	check "$P/share/pizza/web/$w missing or not mode 644" test "$(stat -c %a "$WEB/$w" 2>/dev/null)" = 644
	check "$P/share/pizza/web/$w differs from web/$w" cmp -s "web/$w" "$WEB/$w"
done
# Every local script and stylesheet the page loads is there, under the name
# order-service serves it from (backend/order-service/web.c: /mqtt.min.js is
# node_modules/mqtt/dist/mqtt.min.js).
page_assets_installed() {
	local a f missing=""
	for a in $(sed -n 's/.*\(src\|href\)="\/\([^"]*\)".*/\2/p' "$WEB/index.html"); do
		f=$a
		[ "$a" = mqtt.min.js ] && f=node_modules/mqtt/dist/mqtt.min.js
		[ -s "$WEB/$f" ] || missing="$missing /$a"
	done
	[ -z "$missing" ] || { echo "  not installed:$missing"; return 1; }
}
check "the installed storefront lacks what index.html loads" page_assets_installed

# ---- examples and broker configuration -------------------------------------------
for e in $EXAMPLES; do
	check "$P/share/doc/pizza/examples/$e missing or not mode 644" \
		test "$(stat -c %a "$DOC/examples/$e" 2>/dev/null)" = 644
done
# The installed programs accept their example, and every option in it once
# uncommented ("#name = value" lines).
accepts() {
	local conf=$1 out
	shift
	out=$("$@" --config "$conf" --help 2>&1 >/dev/null) || { echo "  $out"; return 1; }
}
for s in $SERVICES phone-sim; do
	sed -n 's/^#\([a-z][a-z-]* = \)/\1/p' "$DOC/examples/$s.conf" >"$TMP/$s.uncommented.conf"
	check "the uncommented example $s.conf has no options" test -s "$TMP/$s.uncommented.conf"
done
for s in $SERVICES; do
	check "pizza-$s refuses examples/$s.conf" accepts "$DOC/examples/$s.conf" "$R/bin/pizza-$s"
	check "pizza-$s refuses the options in examples/$s.conf" accepts "$TMP/$s.uncommented.conf" "$R/bin/pizza-$s"
done
for c in order watch history token; do
	check "phone-sim $c refuses examples/phone-sim.conf" accepts "$TMP/phone-sim.uncommented.conf" "$R/bin/phone-sim" "$c"
done
# Every option of a service is in its example, but those the unit sets.
examples_cover() {
	local s=$1 opt missing=""
	shift
	for opt in $("$R/bin/pizza-$s" --help | sed -n 's/^ *\(-[a-zA-Z], \)\{0,1\}--\([a-z][a-z-]*\).*/\2/p'); do
		case " config help version $* " in *" $opt "*) continue ;; esac
		grep -q "^#$opt = " "$DOC/examples/$s.conf" || missing="$missing $opt"
	done
	[ -z "$missing" ] || { echo "  not in examples/$s.conf:$missing"; return 1; }
}
check "examples/order-service.conf misses options" \
	examples_cover order-service db mqtt-password-file token-secret-file password-file history-secret-file
check "examples/order-executor.conf misses options" \
	examples_cover order-executor id client-id metrics-port mqtt-password-file
check "examples/order-history.conf misses options" examples_cover order-history db mqtt-password-file \
	history-secret-file
check "examples/notifier.conf misses options" examples_cover notifier db mqtt-password-file callback-secret-file
check "mosquitto/mosquitto.conf differs from broker-config/production/mosquitto.conf" \
	cmp -s broker-config/production/mosquitto.conf "$DOC/mosquitto/mosquitto.conf"
check "mosquitto/acl differs from broker-config/acl" cmp -s broker-config/acl "$DOC/mosquitto/acl"
check "mosquitto/README.md differs from broker-config/production/README.md" \
	cmp -s broker-config/production/README.md "$DOC/mosquitto/README.md"

# Nothing but these was installed.
expected=$(
	for p in $PROGS; do echo "$P/bin/$p"; done
	for m in $MANS; do echo "$P/share/man/$m"; done
	for u in $UNIT_FILES; do echo "$P/lib/systemd/system/$u"; done
	for e in $EXAMPLES; do echo "$P/share/doc/pizza/examples/$e"; done
	for w in $WEB_FILES; do echo "$P/share/pizza/web/$w"; done
	for b in mosquitto.conf acl README.md; do echo "$P/share/doc/pizza/mosquitto/$b"; done
)
actual=$(cd "$D" && find . ! -type d | sed 's|^\.||')
check "installed files differ from the expected list: $(diff <(sort <<<"$expected") <(sort <<<"$actual") | grep '^[<>]' | head -5 | tr '\n' ' ')" \
	test "$(sort <<<"$expected")" = "$(sort <<<"$actual")"

# ---- uninstall ---------------------------------------------------------------
if "$MAKE" --no-print-directory "${MKFILES[@]}" uninstall PREFIX=$P DESTDIR="$D" >"$TMP/uninstall.log" 2>&1; then
	ok
else
	cat "$TMP/uninstall.log"
	bad "make uninstall PREFIX=$P DESTDIR=$D failed"
fi
left=$(cd "$D" && find . ! -type d | head -5)
check "uninstall left files: $left" test -z "$left"
check "uninstall left $P/share/doc/pizza" test ! -e "$DOC"
check "uninstall left $P/share/pizza" test ! -e "$R/share/pizza"

# ---- the default PREFIX ------------------------------------------------------
D2=$TMP/default
if env -u PREFIX "$MAKE" --no-print-directory "${MKFILES[@]}" install DESTDIR="$D2" >"$TMP/install2.log" 2>&1; then
	check "PREFIX does not default to /usr/local" test -x "$D2/usr/local/bin/pizza-order-service"
	check "units of the default PREFIX do not start /usr/local/bin/pizza-order-service" \
		grep -q '^ExecStart=/usr/local/bin/pizza-order-service ' "$D2/usr/local/lib/systemd/system/pizza-order-service.service"
	env -u PREFIX "$MAKE" --no-print-directory "${MKFILES[@]}" uninstall DESTDIR="$D2" >>"$TMP/install2.log" 2>&1
	left=$(cd "$D2" && find . ! -type d | head -5)
	check "uninstall with the default PREFIX left files: $left" test -z "$left"
else
	cat "$TMP/install2.log"
	bad "make install DESTDIR=$D2 (default PREFIX) failed"
fi

echo "install: $pass passed, $fail failed"
[ "$fail" = 0 ]
