"""Log lines as one JSON object each, for production, and gunicorn's access lines without secrets in them.

GATEHOUSE_LOG_FORMAT=json (the production default) selects JsonFormatter in settings.LOGGING; gunicorn is
started with `--logger-class dashboard.logs.GunicornLogger` (see Dockerfile) so its own lines match.
"""

import json
import logging
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from gunicorn.glogging import Logger

# Query parameters that carry credentials: the sign-in callback's authorization code and state, and tokens.
SECRET_PARAMETERS = frozenset({"code", "state", "id_token", "access_token", "token", "secret", "password"})
_MAX_FIELD = 500


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= getattr(record, "fields", {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def redact_query(query: str) -> str:
    """The query string with the values of credential-carrying parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "[redacted]" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs])


class GunicornLogger(Logger):
    """gunicorn's error and access logs as JSON, the access line's query string redacted."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        headers = dict((k.lower(), v) for k, v in resp.headers)
        fields = {
            "method": method,
            "path": path[:_MAX_FIELD],
            "query": redact_query(environ.get("QUERY_STRING", ""))[:_MAX_FIELD],
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "remote": environ.get("REMOTE_ADDR", ""),
            "request_id": headers.get("x-request-id", ""),
            "user_agent": environ.get("HTTP_USER_AGENT", "")[:_MAX_FIELD],
        }
        self.access_log.info("%s %s %s", method, path[:_MAX_FIELD], status, extra={"fields": fields})
