import json
import os

from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


def index(request):
    return render(request, "index.html", {"pid": os.getpid(), "path": request.path})


def hello(request):
    return HttpResponse(b"Hello, World!", content_type="text/plain")


@csrf_exempt
@require_POST
def echo(request):
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        return HttpResponseBadRequest("expected a JSON body\n", content_type="text/plain")
    return JsonResponse({"received": data, "pid": os.getpid()})
