from alerts import selectors


def navigation(request):
    """The open, unacknowledged alerts counted in the top navigation; a callable, so counted only when shown."""
    return {"nav_alerts_open": selectors.alerts_unacknowledged_count}
