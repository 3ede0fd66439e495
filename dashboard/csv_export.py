"""CSV downloads: streamed row by row, every cell neutralised against spreadsheet formulas."""

import csv
from collections.abc import Iterable

from django.http import StreamingHttpResponse
from django.utils import timezone


def csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas: exported text can come from Cloudflare, logs or a hostile user."""
    if value and value.lstrip(" ")[:1] in ("=", "+", "-", "@", "\t", "\r", "\n"):
        return "'" + value
    return value


class _Echo:
    def write(self, value):
        return value


def csv_response(*, name: str, header: list[str], rows: Iterable[list]) -> StreamingHttpResponse:
    """A streamed CSV attachment named gatehouse-<name>-<UTC time>.csv; every cell goes through csv_safe."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([csv_safe("" if value is None else str(value)) for value in row])

    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="gatehouse-{name}-{stamp}.csv"'
    return response
