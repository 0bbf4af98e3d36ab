#!/usr/bin/env bash
# The native relay's tests against an AddressSanitizer + UndefinedBehaviorSanitizer build of
# src/dbkeep/gateway/relay/*.c: any out-of-bounds access, use after free or undefined behaviour
# aborts the run with a report. `make sanitize`; CI runs it after `make test` (kept apart from it
# because the sanitizers slow the relay several times over).
#
#   tests/sanitize_relay.sh [pytest arguments]   (without file arguments: the native relay test files)
#   tests/sanitize_relay.sh -n 2 tests/e2e   (`dbkeep up` itself on the build, under the real clients)
#
# The checkout is left alone: the build goes into a copy of src/ that PYTHONPATH puts first,
# and the script checks that the tests imported that build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python  # make setup built it
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp -r src "$work/src"
rm -f "$work"/src/dbkeep/gateway/_relay*.so
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
built="$work/src/dbkeep/gateway/_relay$suffix"
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
    -I"$include" src/dbkeep/gateway/relay/*.c -o "$built" -lssl -lcrypto

# The sanitizer runtimes must come first in every process that loads the build: the test process,
# and the Python processes the tests start (`dbkeep up`, xdist workers). Other programs the tests
# run (psql hangs with libasan preloaded; mariadb, pgbench, aws ...) must not get them, so this
# plugin takes LD_PRELOAD out of the environment and gives it back to Python children only.
cat > "$work/sanitizer_env.py" <<'PLUGIN'
import os
import subprocess
import sys

_PRELOAD = os.environ.pop("LD_PRELOAD", "")
_popen_init = subprocess.Popen.__init__


def _init(self, args, *rest, env=None, **kwargs):
    program = args[0] if isinstance(args, (list, tuple)) and args else args
    if _PRELOAD and os.fspath(program) == sys.executable:
        env = {**(os.environ if env is None else env), "LD_PRELOAD": _PRELOAD}
    _popen_init(self, args, *rest, env=env, **kwargs)


subprocess.Popen.__init__ = _init
PLUGIN
export PYTHONPATH="$work/src:$work${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
# Reports go to files as well as aborting the process: a `dbkeep up` under test has its stderr
# piped, and its report must not be lost. detect_leaks=0: CPython's own allocations are no leaks.
mkdir "$work/reports"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$work/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/reports/ubsan"

loaded=$("$python" -c 'import dbkeep.gateway._relay as r; print(r.__file__)')
if [ "$loaded" != "$built" ]; then
    echo "sanitize_relay: the tests would import $loaded, not the sanitized build" >&2
    exit 1
fi
# Only flags given (`-x`, `-v`): they apply to the relay's test files, not the whole suite.
paths=0
for arg in "$@"; do
    case "$arg" in -*) ;; *) paths=1 ;; esac
done
if [ "$paths" -eq 0 ]; then
    set -- "$@" tests/unit/test_native_relay.py tests/unit/test_native_relay_mysql.py \
        tests/unit/test_native_relay_mysql_differential.py tests/unit/test_native_relay_inspect.py \
        tests/unit/test_tls_session_resumption.py tests/unit/test_pg_plain_relay.py \
        tests/unit/test_mysql_plain_relay.py
fi
status=0
"$python" -m pytest -q -p no:cacheprovider -p sanitizer_env "$@" || status=$?
if compgen -G "$work/reports/*" >/dev/null; then
    cat "$work"/reports/* >&2
    echo "sanitize_relay: the sanitizers reported the errors above" >&2
    status=1
fi
exit $status
