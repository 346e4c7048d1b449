#!/usr/bin/env bash
# System 1 (examples/nhmmer/README.md): HMMER's nhmmer searches reference databases that
# live on the worker machines. Each database is uploaded once to s3://refs/, each agent that
# holds one is labelled db=NAME, and the search jobs require that label and name the
# database as a cached input, so an agent downloads it once and links it into every job.
#
#   examples/nhmmer/run.sh [DB ...]      # DB: hmmer-tutorial (default), rfam-testsuite
#
#   hmmer-tutorial   dna_target.fa (330 kb of human chromosome 1, Debian's hmmer-examples),
#                    searched with MADE1.hmm (a Dfam transposon model) on each strand
#   rfam-testsuite   100k-4.fa (4 MB, Debian's infernal test suite), searched with models
#                    that hmmbuild --dna makes (as drover jobs) from the Rfam seed
#                    alignments tRNA.sto, Vault.sto and snR75.sto
#
# The searches are jobs of the hub's service nhmmer (nhmmer.service.json, defined here with
# `drover service put`), which give only its params. Every job's hits table (--tblout) is
# pushed back to s3://nhmmer/hits/DB/QUERY.tbl and printed. DROVER (default: build/drover of this repository) is the CLI; DROVER_SERVER,
# DROVER_TOKEN and DROVER_DATA say where the server is, as for the CLI. HMMER_EXAMPLES and
# INFERNAL_TESTSUITE override where the Debian packages put their files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
drover=${DROVER:-$root/build/drover}
hmmer_examples=${HMMER_EXAMPLES:-/usr/share/doc/hmmer/examples/tutorial}
testsuite=${INFERNAL_TESTSUITE:-/usr/share/doc/infernal/examples/testsuite}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n$ %s\n' "$*"; }
[ $# -gt 0 ] || set -- hmmer-tutorial

need() {
  [ -r "$1" ] || { echo "run.sh: $1 is missing: install Debian's $2 (scripts/deps.sh test)" >&2; exit 1; }
}

# A job spec on stdin -> its id on stdout.
submit() {
  "$drover" submit -f -
}

# The search jobs: one spec each, as JSON lines "NAME<TAB>SPEC".
specs=$tmp/specs.tsv
: > "$specs"
search_spec() { # DB DB_URI QUERY_NAME MODEL_URI EXTRA_FLAG
  local db=$1 db_uri=$2 query=$3 model=$4 flag=${5:-}
  local tag=$query${flag:+.${flag#--}}
  /usr/bin/env python3 - "$db" "$db_uri" "$tag" "$model" "$flag" <<'EOF' >> "$specs"
import json, sys
db, db_uri, tag, model, flag = sys.argv[1:]
# a job of the hub's service nhmmer (nhmmer.service.json): only its params
params = {"query": model, "db": db_uri, "hits": f"s3://nhmmer/hits/{db}/{tag}.tbl"}
if flag:
    params["strand"] = flag
spec = {"service": "nhmmer", "name": f"nhmmer {tag} vs {db}", "requires": {"db": db},
        "params": params}
print(f"{db}/{tag}\t{json.dumps(spec)}")
EOF
}

# The service the searches run: nhmmer with its params and ports (a new version only when
# the definition changed).
step "drover service put nhmmer examples/nhmmer/nhmmer.service.json"
"$drover" service put nhmmer "$here/nhmmer.service.json"

for db in "$@"; do
  case $db in
  hmmer-tutorial)
    need "$hmmer_examples/dna_target.fa" hmmer-examples
    step "drover put dna_target.fa s3://refs/hmmer-tutorial/dna_target.fa"
    "$drover" put "$hmmer_examples/dna_target.fa" s3://refs/hmmer-tutorial/dna_target.fa
    "$drover" put "$hmmer_examples/MADE1.hmm" s3://nhmmer/models/MADE1.hmm
    for strand in --watson --crick; do
      search_spec "$db" s3://refs/hmmer-tutorial/dna_target.fa MADE1 \
                  s3://nhmmer/models/MADE1.hmm "$strand"
    done
    ;;
  rfam-testsuite)
    need "$testsuite/100k-4.fa" infernal
    step "drover put 100k-4.fa s3://refs/rfam-testsuite/100k-4.fa"
    "$drover" put "$testsuite/100k-4.fa" s3://refs/rfam-testsuite/100k-4.fa
    # the models, built by hmmbuild --dna on any agent from the Rfam seed alignments
    builds=()
    for fam in tRNA Vault snR75; do
      "$drover" put "$testsuite/$fam.sto" "s3://nhmmer/seeds/$fam.sto" >/dev/null
      step "drover submit: hmmbuild --dna $fam.hmm $fam.sto"
      id=$(printf '%s' "{\"name\": \"hmmbuild $fam\", \"command\": {\"program\": \"hmmbuild\",
        \"arguments\": [{\"type\": \"parameter\", \"value\": \"--dna\"},
                        {\"type\": \"output\", \"value\": \"s3://nhmmer/models/$fam.hmm\"},
                        {\"type\": \"input\", \"value\": \"s3://nhmmer/seeds/$fam.sto\"}]}}" | submit)
      echo "$id"
      builds+=("$id")
    done
    for id in "${builds[@]}"; do
      "$drover" wait --timeout "${WAIT_S:-300}" "$id" >/dev/null ||
        { echo "run.sh: hmmbuild job $id did not succeed:" >&2; "$drover" status "$id" >&2; exit 1; }
    done
    for fam in tRNA Vault snR75; do
      search_spec "$db" s3://refs/rfam-testsuite/100k-4.fa "$fam" "s3://nhmmer/models/$fam.hmm"
    done
    ;;
  *)
    echo "run.sh: unknown database '$db' (hmmer-tutorial or rfam-testsuite)" >&2
    exit 2
    ;;
  esac
done

# Is an agent labelled with each database listening? (A job no agent can take would wait.)
for db in "$@"; do
  probe=$(printf '{"test": true, "requires": {"db": "%s"}, "service": "nhmmer", "params":
    {"query": "s3://nhmmer/q", "db": "s3://refs/db", "hits": "s3://nhmmer/h"}}' "$db")
  listeners=$(printf '%s' "$probe" | "$drover" submit --json -f - |
              /usr/bin/env python3 -c 'import json,sys; print(json.load(sys.stdin)["listeners"])')
  if [ "$listeners" -lt 1 ]; then
    echo "run.sh: no agent is labelled db=$db: start one with --labels db=$db" >&2
    exit 1
  fi
done

# The searches, all at once; then each hits table.
ids=()
while IFS=$'\t' read -r tag spec; do
  step "drover submit: nhmmer $tag"
  id=$(printf '%s' "$spec" | submit)
  echo "$id"
  ids+=("$id|$tag")
done < "$specs"
failed=0
for entry in "${ids[@]}"; do
  id=${entry%%|*} tag=${entry#*|}
  if ! "$drover" wait --timeout "${WAIT_S:-300}" "$id" >/dev/null; then
    echo "run.sh: search $tag ($id) did not succeed:" >&2
    "$drover" status "$id" >&2 || true
    failed=1
    continue
  fi
  step "drover get s3://nhmmer/hits/$tag.tbl -   # on $("$drover" status --json "$id" |
        /usr/bin/env python3 -c 'import json,sys; print(json.load(sys.stdin)["agent"])')"
  "$drover" get "s3://nhmmer/hits/$tag.tbl" - | grep -v '^#' || echo "(no hits)"
done
exit "$failed"
