"""The command line: ``runs``, ``fetch RUN_ID``, ``stop RUN_ID``, ``doctor`` and ``clean``."""

from __future__ import annotations

import argparse
import shutil
import sys

from pymc_modal import attrs, backends, runs, store
from pymc_modal.errors import MissingCredentialsError, PymcModalError
from pymc_modal.paths import RunPaths, runs_dir


def _once_fetched(record: dict, key: str, template: str) -> str:
    """Sampling time and cost are known once a run is fetched."""
    return template.format(record[key]) if key in record else "-"


def _list() -> None:
    found = runs.list_runs()
    if not found:
        print(f"No runs recorded in {runs_dir()}.")
        return
    print(
        f"{'run':<24} {'status':<8} {'where':<14} {'workers':>7} {'created':<20} "
        f"{'sampling':>9}  cost"
    )
    for record in found:
        sampling = _once_fetched(record, "sampling_seconds", "{:.0f} s")
        cost = _once_fetched(record, "cost_usd", "${:.2f}")
        print(
            f"{record['id']:<24} {record['status']:<8} {record['attrs'][attrs.WHERE]:<14} "
            f"{record['workers']:>7} {record['created']:<20} {sampling:>9}  {cost}"
        )


def _size(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _clean(dry_run: bool) -> None:
    """Prune every backend's caches, keeping what runs not yet fetched still need."""
    blobs, checkpoints, fetched = set(), set(), set()
    for folder in sorted(runs_dir().glob("*")):
        record = store.read_record(folder)
        if record is None:
            continue
        if RunPaths(folder).result.exists():
            fetched.add(folder.name)
        else:
            # Records older than `clean` have no blobs, older than checkpoints none of those.
            blobs.update(record.get("blobs", []))
            checkpoints.update(record.get("checkpoints", []))
    keep = blobs | checkpoints
    total = 0
    for name in backends.NAMES:
        try:
            freed = backends.get(name).prune(keep, fetched, dry_run)
        except MissingCredentialsError:
            print(f"  {name}: skipped, no credentials")
            continue
        for where, size in freed.items():
            print(f"  {where:<36} {_size(size):>12}")
        total += sum(freed.values())
    kept = (
        f"; kept the data of {len(blobs)} blob(s) and {len(checkpoints)} checkpoint(s) that "
        "unfetched runs need"
        if keep
        else ""
    )
    print(f"{'Would free' if dry_run else 'Freed'} {_size(total)}{kept}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymc_modal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runs", help="list this machine's runs, newest first")
    fetch = commands.add_parser("fetch", help="wait for a run and save its result as netCDF")
    fetch.add_argument("run_id")
    fetch.add_argument("-o", "--output", default="result.nc", help="default: result.nc")
    stop = commands.add_parser(
        "stop", help="ask a detached run to end after its current block, keeping its draws"
    )
    stop.add_argument("run_id")
    doctor = commands.add_parser(
        "doctor", help="check Modal: credentials, image, a tiny run on the GPU, its cost"
    )
    doctor.add_argument("--gpu", help="the GPU to try (default: as configured, else A100)")
    clean = commands.add_parser(
        "clean", help="delete cached data and compiled programs, here and on Modal"
    )
    clean.add_argument("--dry-run", action="store_true", help="only say what would be freed")
    args = parser.parse_args(argv)
    try:
        if args.command == "runs":
            _list()
        elif args.command == "doctor":
            from pymc_modal.doctor import doctor

            print("\n".join(doctor(args.gpu)))
        elif args.command == "clean":
            _clean(args.dry_run)
        elif args.command == "stop":
            runs.Run(args.run_id).stop()
            print(f"Asked run {args.run_id} to stop; fetch it for its draws.")
        else:
            runs.fetch(args.run_id)
            shutil.copyfile(RunPaths(runs_dir() / args.run_id).result, args.output)
            print(f"Saved run {args.run_id} to {args.output}.")
    except PymcModalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
