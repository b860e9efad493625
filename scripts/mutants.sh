#!/usr/bin/env bash
# Mutation tests (cargo-mutants, config in .cargo/mutants.toml) on the files that decide safety, each group with the
# tests that guard it. Results: docs/testing.md (date, commit, score, each survivor).
#
#   scripts/mutants.sh [GROUP...]            every mutant of the groups (default: all of them)
#   scripts/mutants.sh --in-diff BASE        only the mutants on lines changed since commit BASE (what .ci/run does)
#   scripts/mutants.sh --changed-since BASE  exits 0 when a file of a group changed since BASE, 1 when none did
#
# Groups:
#   parser   crates/vk/src/callback.rs                                   vk's unit tests
#   units    the receiver, rules, the vault, forward/{target,signing,attempt}, credentials   vkhook's unit tests
#   csrf     the CSRF check (http/session.rs: csrf_matches, post_allowed)  vkhook's unit tests
#   access   http/access.rs, the extractors                             the API suite's route matrix, security, roles
# Outputs land in target/mutants-out/GROUP/ (mutants.out/outcomes.json, missed.txt, caught.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--changed-since" ] || command -v cargo-mutants >/dev/null || { echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2; exit 1; }

UNITS=(crates/vkhook/src/receiver/mod.rs crates/vkhook/src/bot/rules.rs crates/vkhook/src/vault.rs
       crates/vkhook/src/forward/target.rs crates/vkhook/src/forward/signing.rs crates/vkhook/src/forward/attempt.rs
       crates/vkhook/src/credentials.rs)

files_of() {
  case $1 in
    parser) echo crates/vk/src/callback.rs ;;
    units) echo "${UNITS[@]}" ;;
    csrf) echo crates/vkhook/src/http/session.rs ;;
    access) echo crates/vkhook/src/http/access.rs ;;
  esac
}

run_group() { # group [extra cargo-mutants args...]
  local group=$1; shift
  local args=()
  for f in $(files_of "$group"); do args+=(--file "$f"); done
  local out="target/mutants-out/$group"
  mkdir -p "$out"
  case $group in
    # -C --lib: each mutant builds and runs the library's unit tests only (not the API suite's binary).
    parser) cargo mutants -p vk "${args[@]}" -C --lib -o "$out" "$@" ;;
    units) cargo mutants -p vkhook "${args[@]}" -C --lib -o "$out" "$@" ;;
    csrf) cargo mutants -p vkhook "${args[@]}" --re 'csrf_matches|post_allowed' -C --lib -o "$out" "$@" ;;
    access) cargo mutants -p vkhook "${args[@]}" -o "$out" "$@" -- --test api -- routes:: security:: roles:: ;;
    *) echo "unknown group: $group" >&2; return 2 ;;
  esac
}

CHOSEN=(parser units csrf access)
if [ "${1:-}" = "--changed-since" ]; then
  base=${2:?--changed-since needs a commit}
  # shellcheck disable=SC2046
  ! git diff --quiet "$base" -- $(for g in "${CHOSEN[@]}"; do files_of "$g"; done)
  exit
fi
if [ "${1:-}" = "--in-diff" ]; then
  base=${2:?--in-diff needs a commit}
  status=0
  for group in "${CHOSEN[@]}"; do
    # shellcheck disable=SC2046
    diff=$(git diff "$base" -- $(files_of "$group"))
    [ -z "$diff" ] && continue
    echo "== $group: mutants on the lines changed since $base"
    printf '%s\n' "$diff" > "target/mutants-$group.diff"
    run_group "$group" --in-diff "target/mutants-$group.diff" || status=$?
  done
  exit $status
fi
[ $# -gt 0 ] && CHOSEN=("$@")
status=0
for group in "${CHOSEN[@]}"; do
  echo "== $group"
  run_group "$group" || status=$?
done
exit $status
