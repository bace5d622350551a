# Sourced by scripts/serve, scripts/test and scripts/bench: make .venv hold fota-bot with the
# extras asked for ("" or "test"), installing only when .venv is missing or pyproject.toml
# changed since the last install, so that a start is fast and needs no package index once
# installed. The stamp records what was installed: pyproject.toml's hash and the extras.
ensure_venv() {
  local extras="$1" spec="." stamp=".venv/.fota-bot-installed" want have
  if [ -n "$extras" ]; then spec=".[$extras]"; fi
  want="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())') $extras"
  have="$(cat "$stamp" 2>/dev/null || true)"
  # An environment installed with the test extras also serves `serve`.
  if [ -x .venv/bin/python ] && { [ "$have" = "$want" ] || { [ -z "$extras" ] && [ "${have%% *}" = "${want%% *}" ]; }; }; then
    return 0
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv and installing fota-bot (once; later starts skip this)…" >&2
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  else
    echo "pyproject.toml changed since .venv was installed: installing fota-bot again…" >&2
  fi
  rm -f "$stamp"
  # pip's editable-install notes go to stdout: keep them out of a start unless pip fails.
  local out
  if ! out="$(.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "Installing fota-bot into .venv failed (above); a first install needs the package index." >&2
    exit 1
  fi
  printf '%s\n' "$want" > "$stamp"
}
