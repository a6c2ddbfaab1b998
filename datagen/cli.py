"""`fraudbatch-datagen`: write one sample client-day of raw input and its ground truth."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fraudcore.clients import ClientConfig, ConfigError, get_client, parse_date

from .generator import GenerationReport, generate_client_day

PROG = "fraudbatch-datagen"


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of fraudbatch-datagen."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate a sample client-day (rawdata/{client}/{date}/...) with planted fraud rings, "
        "malformed records and a ground-truth file outside the client's data.",
    )
    p.add_argument("--client", required=True, help="client name from the registry")
    p.add_argument("--date", required=True, help="client-day, YYYY-MM-DD")
    p.add_argument(
        "--events", type=int, default=20000, help="records to write, exactly; at least 1000 (default 20000)"
    )
    p.add_argument("--seed", type=int, default=7, help="random seed; same arguments give identical files")
    p.add_argument(
        "--malformed-rate", type=float, default=0.01, help="share of malformed records (default 0.01)"
    )
    p.add_argument(
        "--files-per-folder",
        type=int,
        default=2,
        help="files of each format (jsonl, jsonl.gz, csv, csv.gz) per folder (default 2)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        default="var/objectstore-staging",
        help="folder that receives rawdata/{client}/{date}/ (default var/objectstore-staging)",
    )
    where.add_argument(
        "--objectstore-root",
        metavar="DIR",
        help="write straight into a local object store: DIR/{bucket}/rawdata/{client}/{date}/",
    )
    p.add_argument(
        "--truth-dir", default="var/truth", help="where {client}/{date}/truth.json goes (default var/truth)"
    )
    p.add_argument(
        "--registry", help="client registry YAML (default: FRAUDBATCH_CLIENTS or config/clients.yaml)"
    )
    p.add_argument(
        "--upload",
        action="store_true",
        help="then upload every generated file to the configured object store (FRAUDBATCH_* settings)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def output_root(client: ClientConfig, out: str | None, objectstore_root: str | None) -> Path:
    """The folder that receives rawdata/: the client's bucket folder of a local store, else --out."""
    if objectstore_root:
        return Path(objectstore_root) / client.bucket
    return Path(out or "var/objectstore-staging")


def upload_client_day(report: GenerationReport, bucket: str, store=None) -> int:
    """Upload every generated file under its rawdata/ key; return how many were uploaded."""
    if store is None:
        # Imported here so generating files never depends on the storage backends.
        from storage.objectstore import ObjectStoreSettings, make_object_store

        store = make_object_store(ObjectStoreSettings.from_env())
    base = report.root.parents[2]  # {out}/rawdata/{client}/{date} -> {out}
    for path in report.files:
        store.put_file(bucket, path.relative_to(base).as_posix(), path)
    return len(report.files)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator; 0 on success, 2 on a bad argument or configuration."""
    args = build_parser().parse_args(argv)
    try:
        client = get_client(args.client, args.registry)
        day = parse_date(args.date)
        out = output_root(client, args.out, args.objectstore_root)
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(
                total=args.events,
                unit="rec",
                unit_scale=True,
                file=sys.stderr,
                desc=f"{client.name} {day.isoformat()}",
            )
        try:
            report = generate_client_day(
                client,
                day,
                out,
                events=args.events,
                seed=args.seed,
                malformed_rate=args.malformed_rate,
                truth_dir=Path(args.truth_dir),
                files_per_folder=args.files_per_folder,
                progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        uploaded = upload_client_day(report, client.bucket) if args.upload else 0
    except (ConfigError, ValueError) as exc:
        # ConfigError is a ValueError; both are argument problems the user can fix.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.upload:
        print(f"Uploaded {uploaded} files to bucket {client.bucket}.")
    return 0
