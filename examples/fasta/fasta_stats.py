#!/usr/bin/env python3
"""The worker of the FASTA example (examples/fasta): statistics of a FASTA file.

    fasta_stats.py --out RESULT.json [--records RECORDS.tsv] [--chunk-size BYTES] INPUT.fa

Reads INPUT.fa in chunks of --chunk-size bytes (default 4 MiB) and parses the
sequences as they come; after each chunk it writes a progress line
`PERCENT chunk I of N: S sequences` to $DROVER_PROGRESS (drover makes it the
job's progress; without drover, to stderr). Writes a JSON result to --out:
sequences, total_length, gc_content ((G+C) / (A+C+G+T), N and other letters
not counted), n_count, n50, min/max/mean length, the input's SHA-256; and with
--records one line per sequence (id, length, GC count, N count) as TSV. The result
also counts A+T (at_count), so that the statistics of shards add up (fasta_reduce.py).
FASTA_CHUNK_DELAY=SECONDS sleeps that long after each chunk, so that a short
run still shows its progress moving. Only the standard library is used.
"""
import argparse
import hashlib
import json
import os
import sys
import time


class Record:
    __slots__ = ("id", "length", "gc", "at", "n")

    def __init__(self, header):
        self.id = header.split()[0] if header.split() else ""
        self.length = self.gc = self.at = self.n = 0

    def add(self, seq):
        seq = seq.upper()
        self.length += len(seq)
        self.gc += seq.count(b"G") + seq.count(b"C")
        self.at += seq.count(b"A") + seq.count(b"T")
        self.n += seq.count(b"N")


def n50(lengths):
    half, acc = sum(lengths) / 2, 0
    for length in sorted(lengths, reverse=True):
        acc += length
        if acc >= half:
            return length
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--records")
    ap.add_argument("--chunk-size", type=int, default=4 << 20)
    ap.add_argument("input")
    a = ap.parse_args()
    if a.chunk_size < 1:
        raise SystemExit("fasta_stats: --chunk-size must be at least 1")
    delay = float(os.environ.get("FASTA_CHUNK_DELAY") or 0)
    progress_path = os.environ.get("DROVER_PROGRESS")
    progress = open(progress_path, "a", buffering=1) if progress_path else sys.stderr

    size = os.path.getsize(a.input)
    nchunks = max(1, -(-size // a.chunk_size))
    digest = hashlib.sha256()
    records, cur, carry = [], None, b""
    records_out = open(a.records, "w") if a.records else None
    written = 0  # records already in records_out
    print(f"0 reading {size} bytes in {nchunks} chunks", file=progress)
    with open(a.input, "rb") as f:
        for i in range(1, nchunks + 1):
            chunk = f.read(a.chunk_size)
            digest.update(chunk)
            data = carry + chunk
            if i < nchunks:  # keep a partial last line for the next chunk
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            seq = []
            for line in data.split(b"\n"):
                if line.startswith(b">"):
                    if cur is not None:
                        cur.add(b"".join(seq).replace(b"\r", b""))
                    seq = []
                    cur = Record(line[1:].decode(errors="replace"))
                    records.append(cur)
                elif cur is not None:
                    seq.append(line)
            if cur is not None:
                cur.add(b"".join(seq).replace(b"\r", b""))
            if records_out:  # every record but the last is complete
                for r in records[written:-1]:
                    records_out.write(f"{r.id}\t{r.length}\t{r.gc}\t{r.n}\n")
                written = max(written, len(records) - 1)
            pct = 100.0 * f.tell() / size if size else 100.0
            if i < nchunks:
                print(f"{pct:.1f} chunk {i} of {nchunks}: {len(records)} sequences",
                      file=progress)
                if delay > 0:
                    time.sleep(delay)
    if records_out:
        for r in records[written:]:
            records_out.write(f"{r.id}\t{r.length}\t{r.gc}\t{r.n}\n")
        records_out.close()

    lengths = [r.length for r in records]
    gc, at = sum(r.gc for r in records), sum(r.at for r in records)
    result = {
        "input_sha256": digest.hexdigest(),
        "input_size": size,
        "chunks": nchunks,
        "sequences": len(records),
        "total_length": sum(lengths),
        "gc_content": gc / (gc + at) if gc + at else 0.0,
        "gc_count": gc,
        "at_count": at,
        "n_count": sum(r.n for r in records),
        "n50": n50(lengths),
        "min_length": min(lengths, default=0),
        "max_length": max(lengths, default=0),
        "mean_length": sum(lengths) / len(lengths) if lengths else 0.0,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"100 done: {len(records)} sequences, {result['total_length']} bases", file=progress)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
