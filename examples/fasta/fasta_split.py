#!/usr/bin/env python3
"""The splitter of the FASTA example's sharded mode (examples/fasta): INPUT.fa cut into shards.

    fasta_split.py --shards K [--prefix shard-] --input INPUT.fa

Writes K files PREFIX000.fa, PREFIX001.fa, ... into the current folder (the job's work
folder), cut only between records and about equal in size; their bytes, in order, are
exactly the input's. A file with fewer records than K gives as many shards as records.
Progress lines go to $DROVER_PROGRESS. Only the standard library is used.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--prefix", default="shard-")
    ap.add_argument("--input", required=True)
    a = ap.parse_args()
    if not 1 <= a.shards <= 1000:
        raise SystemExit("fasta_split: --shards must be 1 to 1000")
    progress_path = os.environ.get("DROVER_PROGRESS")
    progress = open(progress_path, "a", buffering=1) if progress_path else sys.stderr
    size = os.path.getsize(a.input)
    target = max(1, -(-size // a.shards))  # bytes per shard, rounded up
    index, written, out = 0, 0, None
    with open(a.input, "rb") as f:
        for line in f:
            # a new shard starts at a record once the current one has its share
            if out is None or (line.startswith(b">") and written >= target * (index + 1)
                               and index + 1 < a.shards):
                if out is not None:
                    out.close()
                    index += 1
                    print(f"{100.0 * written / size:.1f} shard {index} of {a.shards} written",
                          file=progress)
                out = open(f"{a.prefix}{index:03d}.fa", "wb")
            out.write(line)
            written += len(line)
    if out is not None:
        out.close()
    print(f"100 {index + 1 if out else 0} shards of {size} bytes", file=progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
