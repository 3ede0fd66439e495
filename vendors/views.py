from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def vendor_list(request):
    return render(request, "vendors/vendor_list.html")
