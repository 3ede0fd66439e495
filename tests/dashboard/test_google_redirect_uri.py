import re
from pathlib import Path
from urllib.parse import urlsplit

from allauth.socialaccount.providers.openid_connect import views as oidc_views
from django.conf import settings
from django.urls import resolve

README = Path(settings.BASE_DIR) / "README.md"


def _readme_redirect_uri():
    uris = re.findall(r"`(https://<your host>/[^`]*)`", README.read_text())
    assert len(uris) == 1, f"README should name exactly one redirect URI, found {uris}"
    return uris[0]


def test_readme_redirect_uri_is_the_google_callback_gatehouse_serves():
    match = resolve(urlsplit(_readme_redirect_uri().replace("<your host>", "gatehouse.example.com")).path)
    assert match.func == oidc_views.callback
    provider_id = settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"][0]["provider_id"]
    assert match.kwargs == {"provider_id": provider_id}


def test_settings_page_shows_the_redirect_uri_the_readme_documents(viewer_client, settings):
    settings.ALLOWED_HOSTS = ["gatehouse.example.com"]
    body = viewer_client.get("/settings/", HTTP_HOST="gatehouse.example.com").content.decode()
    shown = re.search(r'<code id="google-redirect-uri">([^<]*)</code>', body).group(1)
    documented = _readme_redirect_uri().replace("https://<your host>", "http://gatehouse.example.com")
    assert shown == documented


def test_settings_page_redirect_uri_follows_the_host_and_scheme_of_the_request(viewer_client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["gate.corp.example"]
    body = viewer_client.get("/settings/", HTTP_HOST="gate.corp.example", HTTP_X_FORWARDED_PROTO="https").content
    assert b"https://gate.corp.example/accounts/oidc/google/login/callback/" in body
