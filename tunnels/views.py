from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def tunnel_list(request):
    return render(request, "tunnels/tunnel_list.html")
