#!/usr/bin/env python3
"""The reduce step of the FASTA example's sharded mode (examples/fasta): one result of many.

    fasta_reduce.py --out RESULT.json [--records-out RECORDS.tsv] [--sha256 HEX]
                    --stats S0.json --records R0.tsv [--stats S1.json --records R1.tsv ...]

Each --stats/--records pair is what fasta_stats.py wrote for one shard, in shard order.
Writes the statistics of the whole file, as fasta_stats.py would have written them for it
in one piece (N50 and lengths from every record; the input's SHA-256 as --sha256 gives it,
its size the sum of the shards'), with `shards` added, and with --records-out every record
in the input's order. Only the standard library is used.
"""
import argparse
import json
import sys

from fasta_stats import n50


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--records-out")
    ap.add_argument("--sha256")
    ap.add_argument("--stats", action="append", default=[])
    ap.add_argument("--records", action="append", default=[])
    a = ap.parse_args()
    if not a.stats or len(a.stats) != len(a.records):
        raise SystemExit("fasta_reduce: give one --stats and one --records per shard "
                         f"(got {len(a.stats)} and {len(a.records)})")
    shards = []
    for path in a.stats:
        with open(path) as f:
            shards.append(json.load(f))
    lengths = []
    out = open(a.records_out, "w") if a.records_out else None
    for path in a.records:
        with open(path) as f:
            for line in f:
                lengths.append(int(line.split("\t")[1]))
                if out:
                    out.write(line)
    if out:
        out.close()
    if len(lengths) != sum(s["sequences"] for s in shards):
        raise SystemExit("fasta_reduce: the records and the statistics disagree on the count")
    gc, at = sum(s["gc_count"] for s in shards), sum(s["at_count"] for s in shards)
    total = sum(lengths)
    result = {
        "input_sha256": a.sha256,
        "input_size": sum(s["input_size"] for s in shards),
        "shards": len(shards),
        "sequences": len(lengths),
        "total_length": total,
        "gc_content": gc / (gc + at) if gc + at else 0.0,
        "gc_count": gc,
        "at_count": at,
        "n_count": sum(s["n_count"] for s in shards),
        "n50": n50(lengths),
        "min_length": min(lengths, default=0),
        "max_length": max(lengths, default=0),
        "mean_length": total / len(lengths) if lengths else 0.0,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
