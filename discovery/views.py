from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def origin_list(request):
    return render(request, "discovery/origin_list.html")
