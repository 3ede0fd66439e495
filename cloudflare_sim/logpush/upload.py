"""Delivery to S3: each object gzipped into a reusable scratch file and uploaded while the next is produced."""

import contextlib
import datetime as dt
import os
import queue
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import IO, Any
from urllib.parse import urlparse

from cloudflare_sim.logpush.plan import utc
from cloudflare_sim.logpush.records import PUBLIC, VALID, ZERO_TRUST_NETWORK_SESSIONS
from cloudflare_sim.logpush.render import iter_objects


@dataclass
class Summary:
    bucket: str
    prefix: str
    dataset: str
    start: str
    end: str
    objects: int = 0
    records: int = 0
    valid: int = 0
    public: int = 0
    malformed: int = 0
    bytes_uncompressed: int = 0
    bytes_compressed: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_bucket(s3_client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    options: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3_client.create_bucket(**options)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def write_logpush(
    s3_client: Any,
    bucket: str,
    prefix: str = "",
    *,
    records: int,
    hours: float,
    seed: int = 0,
    end: dt.datetime | None = None,
    dataset: str = ZERO_TRUST_NETWORK_SESSIONS,
    public_share: float = 0.01,
    malformed_share: float = 0.005,
    objects_per_hour: int = 12,
    timestamps: str = "unixnano",
    origins: int = 300,
    users: int = 200,
    state: str | None = None,
    create_bucket: bool = True,
    compresslevel: int = 1,
) -> Summary:
    """Write ``records`` lines over the ``hours`` before ``end`` into ``bucket`` and say what was written.

    ``end`` defaults to now, rounded down to a whole batch window, so repeated runs line up with each other.
    ``compresslevel`` defaults to 1 because producing benchmark volumes quickly matters more than object size;
    readers decompress any level the same way.
    """
    began = time.perf_counter()
    prefix = prefix.strip("/")
    if end is None:
        window = max(1, 3600 // max(1, objects_per_hour))
        now = int(time.time())
        end = dt.datetime.fromtimestamp(now - now % window, dt.UTC)
    end = utc(end)
    span = max(1, round(hours * 3600))
    summary = Summary(
        bucket=bucket,
        prefix=prefix,
        dataset=dataset,
        start=(end - dt.timedelta(seconds=span)).isoformat().replace("+00:00", "Z"),
        end=end.isoformat().replace("+00:00", "Z"),
    )
    objects = iter_objects(
        records=records,
        hours=hours,
        seed=seed,
        end=end,
        dataset=dataset,
        public_share=public_share,
        malformed_share=malformed_share,
        objects_per_hour=objects_per_hour,
        timestamps=timestamps,
        origins=origins,
        users=users,
        state=state,
    )
    if create_bucket:
        ensure_bucket(s3_client, bucket)
    with _Uploader(s3_client, bucket, compresslevel) as uploader:
        for plan, lines in objects:
            if plan.records == 0:
                continue
            chunk: list[bytes] = []
            for line in lines:
                chunk.append(line.data)
                if line.kind == VALID:
                    summary.valid += 1
                elif line.kind == PUBLIC:
                    summary.public += 1
                else:
                    summary.malformed += 1
                if len(chunk) == _LINES_PER_BLOCK:
                    summary.bytes_uncompressed += uploader.write(chunk)
                    chunk.clear()
            if chunk:
                summary.bytes_uncompressed += uploader.write(chunk)
            uploader.finish(plan.key(prefix))
            summary.records += plan.records
    summary.objects = len(uploader.uploaded)
    summary.keys = [key for key, _ in uploader.uploaded]
    summary.bytes_compressed = sum(size for _, size in uploader.uploaded)
    summary.seconds = round(time.perf_counter() - began, 3)
    return summary


_LINES_PER_BLOCK = 128


class _Uploader:
    """Compresses objects on one thread and uploads them on another.

    zlib and socket I/O release the GIL, so generating lines, compressing one object and uploading the
    previous one overlap. Bounded queues and two scratch files keep memory at a few blocks whatever the
    volume: an object is never held in memory whole.
    """

    def __init__(self, s3_client: Any, bucket: str, compresslevel: int) -> None:
        self.s3_client = s3_client
        self.bucket = bucket
        self.level = compresslevel
        self.uploaded: list[tuple[str, int]] = []
        self.error: BaseException | None = None
        self._blocks: queue.Queue[bytes | str | None] = queue.Queue(maxsize=4)
        self._ready: queue.Queue[tuple[str, IO[bytes], int] | None] = queue.Queue(maxsize=1)
        self._free: queue.Queue[IO[bytes]] = queue.Queue()
        self._scratch = contextlib.ExitStack()
        for _ in range(2):
            self._free.put(self._scratch.enter_context(tempfile.TemporaryFile()))  # noqa: SIM115 -- closed in __exit__
        self._threads = [
            threading.Thread(target=self._compress, name="logpush-gzip", daemon=True),
            threading.Thread(target=self._upload, name="logpush-upload", daemon=True),
        ]

    def __enter__(self) -> "_Uploader":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._blocks.put(None)
        for thread in self._threads:
            thread.join()
        self._scratch.close()
        if self.error is not None and exc_info[0] is None:
            raise self.error

    def write(self, lines: list[bytes]) -> int:
        if self.error is not None:
            raise self.error
        block = b"\n".join(lines) + b"\n"
        self._blocks.put(block)
        return len(block)

    def finish(self, key: str) -> None:
        self._blocks.put(key)

    def _compress(self) -> None:
        deflate: Any = None
        scratch: IO[bytes] | None = None
        while (item := self._blocks.get()) is not None:
            if self.error is not None:
                continue  # keep draining so that the producer never blocks on a dead consumer
            try:
                if isinstance(item, bytes):
                    if deflate is None:
                        scratch = self._free.get()
                        # zlib's own gzip framing (wbits 31) writes a zero mtime and no file name, so
                        # identical input gives identical objects; GzipFile would also leave a reference
                        # cycle, and its compressor's buffers, behind each object until the next collection.
                        deflate = zlib.compressobj(self.level, zlib.DEFLATED, 31)
                    scratch.write(deflate.compress(item))
                elif deflate is not None and scratch is not None:
                    scratch.write(deflate.flush())
                    self._ready.put((item, scratch, scratch.tell()))
                    deflate, scratch = None, None
            except BaseException as error:  # re-raised in the producer's thread
                self.error = error
        self._ready.put(None)

    def _upload(self) -> None:
        while (item := self._ready.get()) is not None:
            key, scratch, size = item
            try:
                if self.error is None:
                    scratch.seek(0)
                    self.s3_client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=scratch,
                        ContentLength=size,
                        ContentType="application/gzip",
                    )
                    self.uploaded.append((key, size))
            except BaseException as error:  # re-raised in the producer's thread
                self.error = error
            finally:
                scratch.seek(0)
                scratch.truncate()
                self._free.put(scratch)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, prefix); Logpush's ``?region=`` style options are ignored."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def s3_client_from_environment() -> Any:
    """A boto3 S3 client configured the standard way (AWS_ENDPOINT_URL, AWS_REGION, credentials)."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A local endpoint such as moto has no wildcard DNS for bucket subdomains.
    style = "path" if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") else "auto"
    return boto3.client("s3", region_name=region, config=Config(s3={"addressing_style": style}))
