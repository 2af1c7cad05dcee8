# Sourced by the scripts that need root: runs the calling script again
# under sudo when it is not root, so that README's commands work as written
# both for a user with sudo and for root on a machine without sudo (a
# container, a CI runner). The environment that matters (CI, PATH for
# cargo, the test knobs) is kept.
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$0: needs root (it installs packages and builds network namespaces), and sudo is not installed; run it as root" >&2
    exit 1
  fi
  # PATH through env, not --preserve-env: sudo's secure_path would replace
  # it, and cargo lives in the user's ~/.cargo/bin.
  exec sudo --preserve-env=CI,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,TEST_THREADS,SKIP_BENCH,BENCH_FULL,CHAOS_FULL \
    env "PATH=$PATH" bash "$0" "$@"
fi
