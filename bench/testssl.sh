#!/usr/bin/env bash
# Scans Meridian's HTTPS listener with testssl.sh on loopback: Meridian from dist/ (`npm run build` first) with one
# https listener on a free port, a certificate from a throwaway CA, and bench/upstream.ts behind it. Prints the
# scan and a summary of its findings; exits 1 if any finding is rated HIGH or CRITICAL, 2 if the scan could not run.
#
# The leaf is made to look like a public CA's: valid 90 days, a 128-bit random serial and a CRL distribution point
# (a loopback URL nobody fetches: testssl only checks that one is named). Without them testssl rates the throwaway
# certificate itself HIGH (short validity, no revocation information), which says nothing about Meridian's TLS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=bench.test
SCAN_TIMEOUT_S=900
READY_TIMEOUT_S=20

for tool in testssl openssl node; do
  command -v "$tool" >/dev/null || { echo "testssl.sh: $tool is missing (apt-get install testssl.sh; node 20+)" >&2; exit 2; }
done
[[ -f "$ROOT/dist/cli/index.js" ]] || { echo "testssl.sh: no dist/cli/index.js: run npm run build first" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/meridian-testssl.XXXXXX")"
PIDS=()

SCAN_GROUP=""

# Every process this script started, by PID: TERM, up to 5 s to go, then KILL; the scan by its process group, which
# holds testssl's own openssl children. Then the scratch directory.
cleanup() {
  local pid i
  if [[ -n "$SCAN_GROUP" ]]; then
    kill -TERM -- "-$SCAN_GROUP" 2>/dev/null || true
    # testssl writes its JSON as it exits: let it finish before the directory goes.
    for ((i = 0; i < 50; i++)); do kill -0 -- "-$SCAN_GROUP" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SCAN_GROUP" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
# A signal interrupts `wait` at once (not a foreground command), so the scan runs in the background below.
trap 'exit 130' INT TERM

free_port() {
  node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); });"
}

# Certificates: an ECDSA P-256 CA and a P-256 leaf for bench.test that it signs; servers send leaf then CA.
openssl_quiet() { openssl "$@" 2>"$WORK/openssl.err" || { cat "$WORK/openssl.err" >&2; exit 2; }; }
openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/ca.key"
openssl_quiet req -x509 -new -key "$WORK/ca.key" -subj "/CN=Meridian testssl CA" -days 2 -out "$WORK/ca.crt"
openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/leaf.key"
openssl_quiet req -new -key "$WORK/leaf.key" -subj "/CN=$NAME" -out "$WORK/leaf.csr"
cat >"$WORK/leaf.ext" <<EOF
subjectAltName=DNS:$NAME
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
crlDistributionPoints=URI:http://127.0.0.1/meridian-testssl-ca.crl
EOF
openssl_quiet x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days 90 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.crt"
cat "$WORK/leaf.crt" "$WORK/ca.crt" >"$WORK/chain.crt"

# The dummy upstream answers 200 with a small body, so testssl's HTTP header checks see a real response.
UPSTREAM_PORT="$(free_port)"
node "$ROOT/bench/upstream.ts" "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=("$!")

cat >"$WORK/meridian.yaml" <<EOF
self: { region: scan, zone: z1 }
workers: 1
listen:
  - { protocol: https, host: 127.0.0.1, port: 0 }
tls: { certificates: [{ cert: "$WORK/chain.crt", key: "$WORK/leaf.key" }] }
admin: { host: 127.0.0.1, port: 0 }
regions:
  scan:
    location: [0, 0]
    zones:
      z1: { endpoints: ["http://127.0.0.1:$UPSTREAM_PORT"] }
shutdown: { drainDelay: 0, drainTimeout: 2s }
EOF
(cd "$ROOT" && exec node dist/cli/index.js start --config "$WORK/meridian.yaml") >"$WORK/meridian.log" 2>&1 &
PIDS+=("$!")

# The CLI prints its bound addresses once every listener listens: `… https on 127.0.0.1:PORT, admin on …`.
PORT=""
for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
  PORT="$(sed -n 's/.*https on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/meridian.log" | head -n 1)"
  [[ -n "$PORT" ]] && break
  kill -0 "${PIDS[1]}" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$PORT" ]]; then
  echo "testssl.sh: Meridian did not start its https listener:" >&2
  tail -n 20 "$WORK/meridian.log" >&2
  exit 2
fi
echo "Meridian $(cd "$ROOT" && node -p "require('./package.json').version") (dist/) on https://$NAME:$PORT (127.0.0.1); $(testssl --version 2>/dev/null | sed -n 's/.*testssl[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*from.*/testssl.sh \1/p' | head -n 1); $(openssl version)"

# --add-ca: trust the throwaway CA, so the chain of trust is judged like a public one. --severity LOW keeps LOW and
# above (and testssl's own warnings) in the JSON that the summary reads; OK and INFO stay in the printed report.
# setsid: a process group of its own (its ID is the PID), so cleanup reaches every process of the scan.
setsid timeout "$SCAN_TIMEOUT_S" testssl --quiet --color 0 --warnings off --add-ca "$WORK/ca.crt" --ip 127.0.0.1 \
  --severity LOW --jsonfile "$WORK/scan.json" "https://$NAME:$PORT" &
SCAN_GROUP="$!"
SCAN_STATUS=0
wait "$SCAN_GROUP" || SCAN_STATUS=$?
SCAN_GROUP=""
if [[ ! -s "$WORK/scan.json" ]]; then
  echo "testssl.sh: the scan wrote no findings (exit status $SCAN_STATUS)" >&2
  exit 2
fi

node - "$WORK/scan.json" <<'EOF'
// The summary: findings by severity, each one rated LOW or above, and the verdict as the exit status.
const findings = JSON.parse(require('node:fs').readFileSync(process.argv[2], 'utf8'));
const order = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'WARN', 'FATAL'];
const counts = Object.fromEntries(order.map((s) => [s, findings.filter((f) => f.severity === s).length]));
console.log('\nSummary (testssl findings rated LOW or above):');
console.log(order.map((s) => `${s} ${counts[s]}`).join(', '));
for (const s of order) for (const f of findings.filter((x) => x.severity === s)) console.log(`- ${s} ${f.id}: ${f.finding}`);
if (counts.FATAL > 0) {
  console.log('verdict: the scan failed (FATAL)');
  process.exit(2);
}
const failed = counts.CRITICAL + counts.HIGH > 0;
console.log(failed ? 'verdict: FAILED, HIGH or CRITICAL findings' : 'verdict: passed, no HIGH or CRITICAL findings');
process.exit(failed ? 1 : 0);
EOF
