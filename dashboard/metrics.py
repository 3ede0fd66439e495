"""What Prometheus scrapes from /metrics, read from the database and the API budget at the moment of the scrape.

Nothing is counted in process memory: gunicorn's workers and Celery's processes each have their own, and a
scrape reaches one of them. The database and the budget's store are what every process shares, so every figure
here is the same whichever worker answers.
"""

from datetime import datetime

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

PREFIX = "gatehouse"


def _age(moment: datetime) -> float:
    return (timezone.now() - moment).total_seconds()


class GatehouseCollector:
    def collect(self):
        yield from self._cloudflare()
        yield from self._tunnel_sync()
        yield from self._logpush()
        yield from self._workflows()
        yield from self._alerts()
        yield from self._heartbeats()

    def _cloudflare(self):
        from integrations.cloudflare import budget

        spend = budget()
        used = spend.used()
        share = spend.limits.share
        yield GaugeMetricFamily(
            f"{PREFIX}_cloudflare_api_calls_used", "Cloudflare API calls Gatehouse made in the current window", used
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cloudflare_api_calls_left",
            "Cloudflare API calls Gatehouse may still make in the current window",
            max(0, share - used),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cloudflare_api_calls_allowed", "Cloudflare API calls Gatehouse may make per window", share
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cloudflare_api_window_seconds", "Length of the API budget's window", spend.limits.window
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cloudflare_blocked_seconds",
            "Seconds until Gatehouse calls Cloudflare again after a 429 (0: not blocked)",
            spend.blocked_for(),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_cloudflare_rate_limited", "429 answers from Cloudflare", spend.rate_limited()
        )

    def _tunnel_sync(self):
        from tunnels.models import SyncPass

        last = SyncPass.objects.filter(complete=True, finished_at__isnull=False).order_by("-started_at").first()
        duration = GaugeMetricFamily(
            f"{PREFIX}_tunnel_sync_duration_seconds", "How long the last complete tunnel sync pass took"
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_tunnel_sync_data_age_seconds", "Seconds since the last complete tunnel sync pass finished"
        )
        calls = GaugeMetricFamily(f"{PREFIX}_tunnel_sync_api_calls", "API calls the last complete sync pass made")
        if last and last.finished_at:
            duration.add_metric([], (last.finished_at - last.started_at).total_seconds())
            age.add_metric([], _age(last.finished_at))
            calls.add_metric([], last.api_calls)
        failed = SyncPass.objects.exclude(error="").count()
        yield duration
        yield age
        yield calls
        yield CounterMetricFamily(f"{PREFIX}_tunnel_sync_failed_passes", "Sync passes that ended in an error", failed)

    def _logpush(self):
        from discovery.models import IngestRun, Origin

        newest = Origin.objects.aggregate(newest=Max("last_seen"))["newest"]
        lag = GaugeMetricFamily(
            f"{PREFIX}_logpush_lag_seconds", "Age of the newest Gateway log record Gatehouse has read"
        )
        if newest:
            lag.add_metric([], _age(newest))
        yield lag
        last = IngestRun.objects.filter(finished_at__isnull=False, error="").order_by("-started_at").first()
        age = GaugeMetricFamily(
            f"{PREFIX}_logpush_ingest_age_seconds", "Seconds since the last Logpush ingest pass finished"
        )
        rate = GaugeMetricFamily(
            f"{PREFIX}_logpush_records_per_second", "Records per second the last Logpush ingest pass read"
        )
        records = GaugeMetricFamily(f"{PREFIX}_logpush_records", "Records the last Logpush ingest pass read")
        if last and last.finished_at:
            age.add_metric([], _age(last.finished_at))
            records.add_metric([], last.records)
            if last.seconds:
                rate.add_metric([], last.records / last.seconds)
        yield age
        yield rate
        yield records

    def _workflows(self):
        from vendors.models import WorkflowRun

        # A gauge: a run moves from running to its outcome, so one label's count also goes down.
        runs = GaugeMetricFamily(
            f"{PREFIX}_workflow_runs", "Vendor workflow runs by kind and status", labels=["kind", "status"]
        )
        for row in WorkflowRun.objects.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status"):
            runs.add_metric([row["kind"], row["status"]], row["n"])
        yield runs
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        durations = SummaryMetricFamily(
            f"{PREFIX}_workflow_run_duration_seconds",
            "Time from start to finish of finished vendor workflow runs",
            labels=["kind", "status"],
        )
        finished = (
            WorkflowRun.objects.filter(started_at__isnull=False, finished_at__isnull=False)
            .values("kind", "status")
            .annotate(n=Count("id"), total=Sum(took))
            .order_by("kind", "status")
        )
        for row in finished:
            durations.add_metric(
                [row["kind"], row["status"]], count_value=row["n"], sum_value=row["total"].total_seconds()
            )
        yield durations

    def _alerts(self):
        from alerts.models import Alert, Delivery

        deliveries = GaugeMetricFamily(
            f"{PREFIX}_alert_deliveries",
            "Alert deliveries by state (sent, failed, retrying, pending)",
            labels=["state"],
        )
        counts = dict(Delivery.objects.values_list("state").annotate(n=Count("id")).order_by())
        for state in Delivery.State.values:
            deliveries.add_metric([state], counts.get(state, 0))
        yield deliveries
        yield GaugeMetricFamily(
            f"{PREFIX}_alerts_open", "Open alerts", Alert.objects.filter(state=Alert.State.OPEN).count()
        )

    def _heartbeats(self):
        from dashboard.models import Heartbeat

        ages = GaugeMetricFamily(
            f"{PREFIX}_heartbeat_age_seconds", "Seconds since a background process last reported in", labels=["name"]
        )
        for beat in Heartbeat.objects.all():
            ages.add_metric([beat.name], _age(beat.seen_at))
        yield ages
        yield GaugeMetricFamily(
            f"{PREFIX}_heartbeat_interval_seconds",
            "How often beat asks a worker to report in",
            settings.GATEHOUSE_HEARTBEAT_SECONDS,
        )


def exposition() -> bytes:
    """The Prometheus text format, from a registry made for this scrape alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatehouseCollector())
    return generate_latest(registry)
