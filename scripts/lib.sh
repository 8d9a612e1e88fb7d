# Shared set-up for scripts/test and scripts/demo. Source it; do not run it.
#
# Gives: ROOT (the repository), VENV, PY (the venv's python), and functions
# that make the machine ready: a virtualenv with the dev requirements, the
# libpython the embedded-interpreter tests link against, and the ferrocorn
# wheel built by maturin and installed into the venv.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
DEV_REQUIREMENTS="$ROOT/requirements-dev.txt"
# The part of it the pythons suite installs in each other CPython's venv.
PYTHONS_REQUIREMENTS="$ROOT/tests/requirements-pythons.txt"
WHEEL_DIR="$ROOT/target/wheels-local"

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1

# Colours only on a terminal, never in CI or with NO_COLOR.
if [[ -t 1 && "${CI:-}" != "true" && -z "${NO_COLOR:-}" ]]; then
    C_BOLD=$'\e[1m' C_RED=$'\e[31m' C_GREEN=$'\e[32m' C_YELLOW=$'\e[33m' C_OFF=$'\e[0m'
else
    C_BOLD='' C_RED='' C_GREEN='' C_YELLOW='' C_OFF=''
    export CARGO_TERM_COLOR=never NO_COLOR=1
fi

say() { printf '%s==> %s%s\n' "$C_BOLD" "$*" "$C_OFF"; }
warn() { printf '%swarning: %s%s\n' "$C_YELLOW" "$*" "$C_OFF" >&2; }
die() { printf '%serror: %s%s\n' "$C_RED" "$*" "$C_OFF" >&2; exit 1; }

_APT_UPDATED=0
# apt_install PACKAGE...: install Debian packages, running `apt-get update`
# once, and only when something has to be installed.
apt_install() {
    command -v apt-get >/dev/null || die "need the Debian packages: $* (no apt-get here; install them by hand)"
    [[ "$(id -u)" == 0 ]] || die "need the Debian packages: $* (run as root, or install them by hand)"
    if [[ $_APT_UPDATED == 0 ]]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# ensure_server_package NAME: Debian's package NAME (a server the tests run
# on loopback: nginx for tests/test_nginx.py, haproxy for
# tests/test_proxy_desync.py), installed only when no NAME is found (on
# PATH or in /usr/sbin). Only the binary is wanted, so the package is kept
# from starting a system-wide service: a policy-rc.d that refuses every
# service start is put in place for the install when the machine has none.
ensure_server_package() {
    local name="$1"
    if command -v "$name" >/dev/null || [[ -x "/usr/sbin/$name" ]]; then
        return
    fi
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ "$(id -u)" == 0 && ! -e "$policy" ]] && command -v apt-get >/dev/null; then
        printf '#!/bin/sh\n# no service starts while scripts/test installs %s\nexit 101\n' "$name" >"$policy"
        chmod 755 "$policy"
        added=1
    fi
    local rc=0
    apt_install "$name" || rc=$?
    if [[ $added == 1 ]]; then rm -f "$policy"; fi
    [[ $rc == 0 ]] || die "installing $name failed (exit $rc)"
}

ensure_nginx() { ensure_server_package nginx; }
ensure_haproxy() { ensure_server_package haproxy; }

# h2load, from Debian's nghttp2-client: an HTTP/2 client of tests/test_http2.py.
ensure_h2load() {
    command -v h2load >/dev/null && return
    apt_install nghttp2-client || die "installing nghttp2-client failed"
}

require_tools() {
    command -v python3 >/dev/null || die "python3 not found: install Python 3.10 or newer"
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "python3 is $(python3 -V 2>&1); ferrocorn needs 3.10 or newer"
}

# The .venv, made with the venv module (Debian ships it separately).
ensure_venv() {
    if [[ -x "$PY" ]] && "$PY" -c 'import pip' 2>/dev/null; then
        return
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        local minor
        minor="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install python3-venv "python${minor}-venv"
    fi
    say "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
}

# ensure_requirements NAME FILE...: pip install -r FILE... when the files
# (or the interpreter) changed since the last install, judged by a hash
# kept in a stamp file inside the venv.
ensure_requirements() {
    local name="$1"
    shift
    local stamp="$VENV/.requirements-$name.sha256" hash
    hash="$( { "$PY" -VV; cat "$@"; } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
        return
    fi
    say "installing $name requirements"
    local args=()
    local f
    for f in "$@"; do args+=(-r "$f"); done
    "$PY" -m pip install -q "${args[@]}"
    echo "$hash" >"$stamp"
}

# The interpreter's shared library directory: `cargo test --features python`
# links the test binary against libpython and needs it at run time.
python_libdir() {
    "$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))'
}

ensure_libpython() {
    PY_LIBDIR="$(python_libdir)"
    local ldlib
    ldlib="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LDLIBRARY") or "")')"
    if [[ -z "$ldlib" || ! -e "$PY_LIBDIR/$ldlib" ]]; then
        local minor
        minor="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install "libpython${minor}-dev" python3-dev
    fi
    export PY_LIBDIR
}

# Build the wheel with maturin (release) and install it into the venv, so
# the package that is tested is the one a user installs. The install is
# skipped when the wheel is byte-for-byte the one installed last time.
build_and_install_wheel() {
    say "maturin build --release"
    rm -rf "$WHEEL_DIR"
    (cd "$ROOT" && "$VENV/bin/maturin" build --release --interpreter "$PY" --out "$WHEEL_DIR")
    local wheels=("$WHEEL_DIR"/*.whl)
    [[ ${#wheels[@]} == 1 && -f "${wheels[0]}" ]] || die "expected one wheel in $WHEEL_DIR, found: ${wheels[*]}"
    WHEEL="${wheels[0]}"
    local stamp="$VENV/.wheel.sha256" hash
    hash="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" && -x "$VENV/bin/ferrocorn" ]]; then
        say "wheel unchanged, already installed: $(basename "$WHEEL")"
        return
    fi
    say "installing $(basename "$WHEEL")"
    "$PY" -m pip install -q --force-reinstall --no-deps "$WHEEL"
    echo "$hash" >"$stamp"
}

# setup: everything scripts/test and scripts/demo need before they start.
setup() {
    require_tools
    ensure_venv
    ensure_requirements dev "$DEV_REQUIREMENTS" "$PYTHONS_REQUIREMENTS" \
        "$ROOT/examples/school/requirements.txt" "$ROOT/examples/django/requirements.txt"
    export PYO3_PYTHON="$PY"
}

# ---------------------------------------------------------------- other Pythons
# The CPython minor versions the abi3 wheel is tested on (pyproject.toml's
# requires-python starts at the first).
SUPPORTED_MINORS=(3.10 3.11 3.12 3.13)
PYTHONS_DIR="$ROOT/.venv-pythons"

# python_is MINOR CANDIDATE: CANDIDATE runs, is CPython MINOR with the GIL
# (the abi3 wheel is not for free-threaded builds), and can make venvs.
python_is() {
    local minor="$1" cand="$2"
    [[ -x "$cand" ]] || return 1
    [[ "$("$cand" -c 'import sys, sysconfig, platform, venv, ensurepip
print("%s %d.%d %s" % (platform.python_implementation(), *sys.version_info[:2],
      sysconfig.get_config_var("Py_GIL_DISABLED") or 0))' 2>/dev/null)" == "CPython $minor 0" ]]
}

# find_python MINOR: print the path of a CPython MINOR interpreter, looked
# for in pyenv's versions (newest patch release first), then as pythonMINOR
# on PATH, then in /usr/local/bin and /usr/bin. Prints nothing if none.
find_python() {
    local minor="$1" cand
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    local cands=()
    if [[ -d "$pyenv_root/versions" ]]; then
        while IFS= read -r cand; do
            cands+=("$cand/bin/python$minor")
        done < <(find "$pyenv_root/versions" -mindepth 1 -maxdepth 1 -name "$minor.*" \
                    | sort -t. -k3,3nr)
    fi
    if command -v "python$minor" >/dev/null; then
        cands+=("$(command -v "python$minor")")
    fi
    cands+=("/usr/local/bin/python$minor" "/usr/bin/python$minor")
    for cand in "${cands[@]}"; do
        if python_is "$minor" "$cand"; then
            echo "$cand"
            return
        fi
    done
}

# ensure_python_venv MINOR INTERPRETER REQUIREMENTS...: a venv for MINOR
# under .venv-pythons/ with REQUIREMENTS installed (once, stamped like
# ensure_requirements) and the wheel $WHEEL installed (again only when it
# changed). Prints the venv's directory on the last line.
ensure_python_venv() {
    local minor="$1" interp="$2"
    shift 2
    local venv="$PYTHONS_DIR/$minor"
    if ! [[ -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pip' 2>/dev/null \
        || [[ "$(readlink -f "$venv/bin/python")" != "$(readlink -f "$interp")" ]]; then
        say "creating $venv with $interp" >&2
        rm -rf "$venv"
        "$interp" -m venv "$venv" >&2
    fi
    (VENV="$venv" PY="$venv/bin/python" ensure_requirements tests "$@") >&2
    local stamp="$venv/.wheel.sha256" hash
    hash="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
    if ! [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" && -x "$venv/bin/ferrocorn" ]]; then
        say "installing $(basename "$WHEEL") into $venv" >&2
        "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEEL" >&2
        echo "$hash" >"$stamp"
    fi
    echo "$venv"
}
