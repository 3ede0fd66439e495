from allauth.account import views as account_views
from allauth.socialaccount import views as social_views
from django.urls import include, path

from dashboard import views

# allauth's own URLconf would also mount account-connection pages; Gatehouse needs only Google sign-in.
accounts_urlpatterns = [
    path("login/", account_views.login, name="account_login"),
    path("logout/", account_views.logout, name="account_logout"),
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    path("3rdparty/login/cancelled/", social_views.login_cancelled, name="socialaccount_login_cancelled"),
    path("3rdparty/login/error/", social_views.login_error, name="socialaccount_login_error"),
    path("3rdparty/signup/", social_views.signup, name="socialaccount_signup"),
    # allauth's OpenID Connect URLs carry their own "oidc/" prefix: /accounts/oidc/google/login/callback/.
    path("", include("allauth.socialaccount.providers.openid_connect.urls")),
]

urlpatterns = [
    path("", include("dashboard.urls")),
    path("tunnels/", include("tunnels.urls")),
    path("discovery/", include("discovery.urls")),
    path("vendors/", include("vendors.urls")),
    path("alerts/", include("alerts.urls")),
    path("accounts/", include(accounts_urlpatterns)),
]

handler403 = views.permission_denied
