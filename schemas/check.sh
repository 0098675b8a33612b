#!/usr/bin/env bash
# Checks the schemas in this directory with ajv-cli (JSON Schema 2020-12, formats on): every
# schema compiles in strict mode, every entry of its "examples" (and of each $defs' "examples" in
# common.schema.json) is valid, and every counter-example in tests/counter-examples.json is
# invalid. Exits 0 only when all of that holds.
#
# Needs Node.js (>= 18) and npx. The first run fetches ajv-cli and ajv-formats from the npm
# registry into the npx cache; later runs use the cache and work without network. Override the
# versions with AJV_CLI / AJV_FORMATS (npm package specs).
#
#   schemas/check.sh                                   # all schemas
#   schemas/check.sh patient-reply.schema.json cloudevent.schema.json
#   schemas/check.sh validate patient-reply.schema.json body.json...   # check your own files
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
AJV_CLI=${AJV_CLI:-ajv-cli@5.0.0}
AJV_FORMATS=${AJV_FORMATS:-ajv-formats@3.0.1}

command -v npx >/dev/null || { echo "check.sh: npx (Node.js) is required" >&2; exit 2; }

ajv() {
    # -p twice: ajv-cli loads "-c ajv-formats" with require(), so both packages must be installed
    # side by side; "npx ajv-cli -c ajv-formats" alone fails with "Cannot find module".
    npx --yes -p "$AJV_CLI" -p "$AJV_FORMATS" ajv "$@"
}

# Use the npx cache without asking the registry when both packages are in it (fast, and works
# offline); otherwise fetch them once. Either way fail here, clearly, if ajv cannot run at all.
preflight_err=$(mktemp)
if npm_config_offline=true ajv help >/dev/null 2>&1; then
    export npm_config_offline=true
elif ! ajv help >/dev/null 2>"$preflight_err"; then
    echo "check.sh: cannot run $AJV_CLI with $AJV_FORMATS through npx:" >&2
    tail -n 5 "$preflight_err" >&2
    rm -f "$preflight_err"
    exit 2
fi
rm -f "$preflight_err"

# validate SCHEMA FILE...: check JSON files against one schema (the others are loaded for $ref).
if [ "${1:-}" = validate ]; then
    [ $# -ge 3 ] || { echo "usage: $0 validate SCHEMA FILE..." >&2; exit 2; }
    schema=$(basename "$2"); shift 2
    [ -f "$here/$schema" ] || { echo "check.sh: no schema $schema in $here" >&2; exit 2; }
    data=()
    for f in "$@"; do data+=(-d "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
    cd "$here"
    refs=()
    for r in *.schema.json; do [ "$r" = "$schema" ] || refs+=(-r "$r"); done
    ajv validate --spec=draft2020 \
        --strict=true --strict-required=false --all-errors --errors=text -c ajv-formats \
        -s "$schema" "${refs[@]}" "${data[@]}"
    exit
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$here"
if [ $# -gt 0 ]; then schemas=("$@"); else schemas=(*.schema.json); fi

# Split examples and counter-examples into one file each: tmp/<schema>/{valid,invalid}/NNN.json.
node - "$tmp" "${schemas[@]}" <<'JS'
const fs = require('fs');
const path = require('path');
const [tmp, ...schemas] = process.argv.slice(2);
const counter = JSON.parse(fs.readFileSync('tests/counter-examples.json', 'utf8'));
let problems = 0;
for (const file of schemas) {
  const schema = JSON.parse(fs.readFileSync(file, 'utf8'));
  const valid = [...(schema.examples || [])];
  // common.schema.json: its root is a sample object with one member per $defs entry, so each
  // definition's own examples are checked as {"<name>": example}.
  if (file === 'common.schema.json') {
    for (const [name, def] of Object.entries(schema.$defs || {}))
      for (const ex of def.examples || []) valid.push({ [name]: ex });
  }
  const counterList = counter[file] || [];
  const invalid = counterList.map((c) => c.data);
  for (const key of ['$id', 'title', 'description']) {
    if (!schema[key]) { console.error(`${file}: no ${key}`); problems++; }
  }
  if (schema.$id !== `https://schemas.pm-bridge.dev/${file}`) {
    console.error(`${file}: $id is not https://schemas.pm-bridge.dev/${file}`); problems++;
  }
  if (valid.length === 0) { console.error(`${file}: no examples`); problems++; }
  if (invalid.length === 0) { console.error(`${file}: no counter-examples`); problems++; }
  for (const [kind, list] of [['valid', valid], ['invalid', invalid]]) {
    const dir = path.join(tmp, file, kind);
    fs.mkdirSync(dir, { recursive: true });
    list.forEach((data, i) =>
      fs.writeFileSync(path.join(dir, String(i).padStart(3, '0') + '.json'), JSON.stringify(data)));
  }
  fs.writeFileSync(path.join(tmp, file, 'why'), counterList.map((c, i) =>
    `${String(i).padStart(3, '0')}.json ${c.why}\n`).join(''));
}
for (const key of Object.keys(counter)) {
  if (key !== 'about' && !fs.existsSync(key)) {
    console.error(`tests/counter-examples.json: no schema ${key}`); problems++;
  }
}
process.exit(problems ? 1 : 0);
JS

failed=0
for s in "${schemas[@]}"; do
    refs=()
    for r in *.schema.json; do [ "$r" = "$s" ] || refs+=(-r "$r"); done
    common=(--spec=draft2020 --strict=true --strict-required=false -c ajv-formats -s "$s" "${refs[@]}")
    # ajv test prints one line per data file ("... passed test" / "... failed test" + errors).
    if ! ajv test "${common[@]}" -d "$tmp/$s/valid/*.json" --valid >"$tmp/out" 2>&1; then
        echo "FAIL $s: an example is invalid"; sed "s|$tmp/||" "$tmp/out"; failed=1; continue
    fi
    if ! ajv test "${common[@]}" -d "$tmp/$s/invalid/*.json" --invalid >"$tmp/out" 2>&1; then
        echo "FAIL $s: counter-examples that the schema accepts:"
        sed -n 's|.*/invalid/\([0-9]*\.json\) failed test.*|\1|p' "$tmp/out" |
            while read -r f; do grep "^$f " "$tmp/$s/why" | sed 's/^[0-9]*\.json /  - /'; done
        grep -q 'failed test' "$tmp/out" || sed "s|$tmp/||" "$tmp/out"
        failed=1; continue
    fi
    printf 'ok   %s (%d examples, %d counter-examples)\n' "$s" \
        "$(ls "$tmp/$s/valid" | wc -l)" "$(ls "$tmp/$s/invalid" | wc -l)"
done
exit $failed
