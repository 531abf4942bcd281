#!/usr/bin/env bash
# `npm test` runs this first: the tests drive real programs (Chromium for the dashboard, Prometheus and promtool for
# the metrics, openssl to make certificates, HAProxy to send the PROXY protocol, and a docker client, where the
# distribution has one without the engine, for `docker stack config`). As root on Debian it installs whatever is
# missing; anywhere else it names what to install and stops, rather than letting those tests fail one by one. The
# names below are Debian's package names.
set -euo pipefail
need=()
[[ -x /usr/bin/chromium ]] || need+=(chromium)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)

# The docker client alone: Debian 13 and later package it as docker-cli; Debian 12 has only the whole engine, and
# there the Swarm stack test checks the YAML alone and says so.
docker_cli_available() {
  ! command -v docker >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1 && apt-cache show docker-cli >/dev/null 2>&1
}

if command -v apt-get >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]]; then
    # Package lists are read only when something is missing, so a ready machine pays nothing here.
    ((${#need[@]} > 0)) && apt-get update -qq
    docker_cli_available && need+=(docker-cli)
    ((${#need[@]} == 0)) && exit 0
    echo "pretest: installing ${need[*]} from Debian's packages (the tests drive them for real)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    exit 0
  fi
  docker_cli_available && need+=(docker-cli)
  ((${#need[@]} == 0)) && exit 0
  echo "pretest: the tests drive ${need[*]} for real; install them first: sudo apt-get install --no-install-recommends ${need[*]}" >&2
  exit 1
fi
((${#need[@]} == 0)) && exit 0
# Not Debian: say which programs, and where the tests look for them.
declare -A where=(
  [chromium]='Chromium at /usr/bin/chromium (the dashboard test starts that path)'
  [prometheus]='prometheus and promtool on PATH'
  [openssl]='openssl on PATH'
  [haproxy]='haproxy on PATH or at /usr/sbin/haproxy'
)
echo "pretest: the tests drive these programs for real; install them first:" >&2
for name in "${need[@]}"; do echo "  - ${where[$name]}" >&2; done
command -v docker >/dev/null 2>&1 || echo "  - (optional) a docker client on PATH, so the Swarm stack test also runs docker stack config" >&2
exit 1
