"""``python -m cloudflare_sim logpush``: write a window of sessions to an s3:// destination and say what was written."""

import argparse
import datetime as dt
import json
import os

from cloudflare_sim.logpush.plan import utc
from cloudflare_sim.logpush.records import DATASETS, TIMESTAMP_FORMATS, ZERO_TRUST_NETWORK_SESSIONS
from cloudflare_sim.logpush.upload import parse_s3_url, s3_client_from_environment, write_logpush


def _parse_end(text: str) -> dt.datetime:
    try:
        return utc(dt.datetime.fromisoformat(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from error


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudflare_sim logpush",
        description="Write network-session logs to S3 as Cloudflare Logpush does (gzipped NDJSON).",
    )
    parser.add_argument(
        "--to",
        default=os.environ.get("GATEHOUSE_LOGPUSH_URL"),
        help="destination, s3://bucket/prefix (default: $GATEHOUSE_LOGPUSH_URL)",
    )
    parser.add_argument("--records", type=int, required=True, help="lines to write in total")
    parser.add_argument("--hours", type=float, required=True, help="length of the window the sessions fill")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--end", type=_parse_end, help="end of the window, ISO 8601 (default: now, rounded down to a batch)"
    )
    parser.add_argument("--objects-per-hour", type=int, default=12, help="batches per hour (default 12)")
    parser.add_argument("--dataset", choices=DATASETS, default=ZERO_TRUST_NETWORK_SESSIONS)
    parser.add_argument("--public-share", type=_share, default=0.01, help="share of sessions to public IPs")
    parser.add_argument("--malformed-share", type=_share, default=0.005, help="share of broken lines")
    parser.add_argument("--timestamps", choices=TIMESTAMP_FORMATS, default="unixnano")
    parser.add_argument("--origins", type=int, default=300, help="private origins in the account")
    parser.add_argument("--users", type=int, default=200, help="people using WARP")
    parser.add_argument("--state", help="simulator state file to take tunnel and virtual network ids from")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.to:
        parser.error("--to s3://bucket/prefix is required (or set GATEHOUSE_LOGPUSH_URL)")
    try:
        bucket, prefix = parse_s3_url(args.to)
        summary = write_logpush(
            s3_client_from_environment(),
            bucket,
            prefix,
            records=args.records,
            hours=args.hours,
            seed=args.seed,
            end=args.end,
            dataset=args.dataset,
            public_share=args.public_share,
            malformed_share=args.malformed_share,
            objects_per_hour=args.objects_per_hour,
            timestamps=args.timestamps,
            origins=args.origins,
            users=args.users,
            state=args.state,
        )
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        where = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
        print(
            f"logpush: {summary.objects} objects, {summary.records:,} {summary.dataset} records "
            f"({summary.valid:,} valid, {summary.public:,} to public IPs, {summary.malformed:,} malformed) "
            f"from {summary.start} to {summary.end}\n"
            f"         {_megabytes(summary.bytes_uncompressed)} of NDJSON, "
            f"{_megabytes(summary.bytes_compressed)} gzipped, in {summary.seconds:.1f} s, "
            f"under {where}YYYYMMDD/"
        )
    return 0
