#!/usr/bin/env bash
# System 3 (examples/workflow/README.md): a workflow of nodes, ports and connections on
# services of the hub. A FASTA database is split into K shards, the query models are built
# from alignments, each shard is searched with nhmmer by a node of its own, and the shards'
# hits are merged into one table:
#
#   build (hmmbuild-dna) --hmm--------------> search1..K (nhmmer-shard) --hits--> merge
#   split (fasta-split)  --shard1..K--------> (one shard each)                   (hits-merge)
#
#   examples/workflow/run.sh [-k K] [FASTA [STOCKHOLM]]
#
# K: 1 to 8 shards (default 4). FASTA (default: 100k-4.fa of Debian's infernal test suite,
# 40 sequences, 4 Mb) is the database; STOCKHOLM (default: the Rfam seed alignments
# tRNA.sto, Vault.sto and snR75.sto of the same suite, joined) the alignments the query
# models are built from. The four services are defined here with `drover service put` (a
# new version only when a definition changed), the workflow is submitted with `drover
# workflow submit`, drawn with `drover workflow status` until it ends, and the merged
# table (s3://workflow/RUN/hits.tbl) is printed. DROVER (default: build/drover of this
# repository) is the CLI; DROVER_SERVER, DROVER_TOKEN and DROVER_DATA say where the server
# is, as for the CLI. INFERNAL_TESTSUITE overrides where Debian's infernal puts its files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
drover=${DROVER:-$root/build/drover}
testsuite=${INFERNAL_TESTSUITE:-/usr/share/doc/infernal/examples/testsuite}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n$ %s\n' "$*"; }
usage() { echo "usage: examples/workflow/run.sh [-k K] [FASTA [STOCKHOLM]]" >&2; exit 2; }

k=4
while getopts k: opt; do
  case $opt in
  k) k=$OPTARG ;;
  *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 2 ] || usage
case $k in
[1-8]) ;;
*) echo "run.sh: -k must be a number of shards from 1 to 8, not '$k'" >&2; exit 2 ;;
esac
fasta=${1:-$testsuite/100k-4.fa}
if [ $# -ge 2 ]; then
  sto=$2
else
  for fam in tRNA Vault snR75; do
    [ -r "$testsuite/$fam.sto" ] ||
      { echo "run.sh: $testsuite/$fam.sto is missing: install Debian's infernal (scripts/deps.sh test)" >&2; exit 1; }
    cat "$testsuite/$fam.sto"
  done > "$tmp/families.sto"
  sto=$tmp/families.sto
fi
for f in "$fasta" "$sto"; do
  [ -r "$f" ] || { echo "run.sh: cannot read $f" >&2; exit 1; }
done
# nhmmer's E-values count the database's residues (in millions): each shard's search is
# told the whole database's (-Z), so the merged hits are those of one search of all of it
sequences=$(grep -c '^>' "$fasta" || true)
[ "$sequences" -ge "$k" ] ||
  { echo "run.sh: $fasta has $sequences sequences: too few for $k shards" >&2; exit 1; }
z=$(awk '!/^>/ { gsub(/[ \t\r]/, ""); n += length($0) } END { printf "%.6f", n / 1e6 }' "$fasta")

for svc in split hmmbuild search merge; do
  name=$(case $svc in split) echo fasta-split ;; hmmbuild) echo hmmbuild-dna ;;
         search) echo nhmmer-shard ;; merge) echo hits-merge ;; esac)
  step "drover service put $name examples/workflow/$svc.service.json"
  "$drover" service put "$name" "$here/$svc.service.json"
done

run=run-$(date -u +%Y%m%dT%H%M%S)-$$
base=s3://workflow/$run
step "drover put $(basename "$fasta") $base/db.fa"
"$drover" put "$fasta" "$base/db.fa"
"$drover" put "$sto" "$base/families.sto" >/dev/null

# The workflow: a node per service use, ports connected by name.
/usr/bin/env python3 - "$k" "$base" "$z" > "$tmp/workflow.json" <<'PY'
import json, sys
k, base, z = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
nodes = {
    "build": {"job": {"service": "hmmbuild-dna", "name": "build the query models",
                      "params": {"alignment": f"{base}/families.sto",
                                 "hmm": f"{base}/families.hmm"}}},
    "split": {"job": {"service": "fasta-split", "name": f"split the database in {k}",
                      "params": {"fasta": f"{base}/db.fa",
                                 **{f"shard{i}": f"{base}/shards/{i}.fa"
                                    for i in range(1, k + 1)}}}},
    "merge": {"job": {"service": "hits-merge", "name": "merge the hits",
                      "params": {"merged": f"{base}/hits.tbl"}}},
}
connections = []
for i in range(1, k + 1):
    nodes[f"search{i}"] = {"job": {"service": "nhmmer-shard", "name": f"nhmmer shard {i}",
                                   "params": {"z": z, "hits": f"{base}/hits/{i}.tbl"}}}
    connections += [{"from": "build.hmm", "to": f"search{i}.query"},
                    {"from": f"split.shard{i}", "to": f"search{i}.db"},
                    {"from": f"search{i}.hits", "to": f"merge.part{i}"}]
json.dump({"name": f"nhmmer in {k} shards", "nodes": nodes, "connections": connections},
          sys.stdout, indent=1)
PY

step "drover workflow submit workflow.json   # $k shards"
id=$("$drover" workflow submit --json "$tmp/workflow.json" |
     /usr/bin/env python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "workflow $id"
state=running
for _ in $(seq "${WAIT_S:-300}"); do
  state=$("$drover" workflow status --json "$id" |
          /usr/bin/env python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = running ] || break
  sleep 1
done
step "drover workflow status $id"
"$drover" workflow status "$id"
if [ "$state" != succeeded ]; then
  echo "run.sh: workflow $id ended $state (drover workflow status --json $id says why)" >&2
  exit 1
fi
step "drover get $base/hits.tbl -"
"$drover" get "$base/hits.tbl" -
