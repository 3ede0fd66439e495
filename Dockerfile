FROM python:3.13-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN useradd --system --home /app gatehouse
COPY pyproject.toml ./
COPY dashboard dashboard
COPY tunnels tunnels
COPY discovery discovery
COPY vendors vendors
COPY alerts alerts
COPY integrations integrations
COPY cloudflare_sim cloudflare_sim
COPY templates templates
COPY static static
COPY manage.py ./
RUN pip install --no-cache-dir . \
 && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && mkdir -p var && chown gatehouse var
USER gatehouse
EXPOSE 8000
# Access and error lines as JSON, the query string's credentials (the sign-in callback's code) redacted.
CMD ["gunicorn", "dashboard.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", \
     "--logger-class", "dashboard.logs.GunicornLogger"]
