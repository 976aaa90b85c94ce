"""The command line: ``python -m pymc_modal runs`` and ``python -m pymc_modal fetch RUN_ID``."""

from __future__ import annotations

import argparse
import shutil
import sys

from pymc_modal import runs, store
from pymc_modal.errors import PymcModalError


def _once_fetched(record: dict, key: str, template: str) -> str:
    """Sampling time and cost are known once a run is fetched."""
    return template.format(record[key]) if key in record else "-"


def _list() -> None:
    found = runs.list_runs()
    if not found:
        print(f"No runs recorded in {store.runs_dir()}.")
        return
    print(
        f"{'run':<24} {'status':<8} {'where':<14} {'workers':>7} {'created':<20} "
        f"{'sampling':>9}  cost"
    )
    for record in found:
        sampling = _once_fetched(record, "sampling_seconds", "{:.0f} s")
        cost = _once_fetched(record, "cost_usd", "${:.2f}")
        print(
            f"{record['id']:<24} {record['status']:<8} {record['attrs']['pymc_modal_where']:<14} "
            f"{record['workers']:>7} {record['created']:<20} {sampling:>9}  {cost}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymc_modal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runs", help="list this machine's runs, newest first")
    fetch = commands.add_parser("fetch", help="wait for a run and save its result as netCDF")
    fetch.add_argument("run_id")
    fetch.add_argument("-o", "--output", default="result.nc", help="default: result.nc")
    args = parser.parse_args(argv)
    try:
        if args.command == "runs":
            _list()
        else:
            runs.fetch(args.run_id)
            shutil.copyfile(store.runs_dir() / args.run_id / store.RESULT_FILE, args.output)
            print(f"Saved run {args.run_id} to {args.output}.")
    except PymcModalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
