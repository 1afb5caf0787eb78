"""Views and URLs for the request-middleware tests and benchmark (``ROOT_URLCONF = "tests.request_urls"``)."""

from __future__ import annotations

import asyncio
import hashlib
import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from tests.testapp.models import Author

# Chunks a streaming view has produced so far; tests check that nothing was pulled before the client read.
STREAM_PROGRESS: list[int] = []
STREAM_CHUNKS = [f"chunk-{index:03d}\n".encode() for index in range(50)]


@csrf_exempt
def echo_json(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data}, status=201)


@csrf_exempt
def authors(request):
    if request.method == "POST":
        author = Author.objects.create(name=json.loads(request.body)["name"])
        return JsonResponse({"id": author.pk, "name": author.name}, status=201)
    rows = list(Author.objects.order_by("id").values("id", "name")[:20])
    return JsonResponse({"results": rows})


def author_detail(request, pk):
    return JsonResponse({"id": pk})


@csrf_exempt
def upload(request):
    upload = request.FILES["file"]
    content = upload.read()
    return JsonResponse(
        {
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "title": request.POST.get("title"),
        }
    )


@csrf_exempt
def read_stream(request):
    """Reads the body through ``request.read()`` in small pieces, as a streaming consumer would."""
    digest, size = hashlib.sha256(), 0
    while chunk := request.read(1000):
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"sha256": digest.hexdigest(), "size": size})


def stream(request):
    def produce():
        for index, chunk in enumerate(STREAM_CHUNKS):
            STREAM_PROGRESS.append(index)
            yield chunk

    return StreamingHttpResponse(produce(), content_type="text/plain")


async def async_stream(request):
    async def produce():
        for index, chunk in enumerate(STREAM_CHUNKS):
            STREAM_PROGRESS.append(index)
            await asyncio.sleep(0)
            yield chunk

    return StreamingHttpResponse(produce(), content_type="text/plain")


def boom(request):
    raise ValueError("the view failed")


async def async_boom(request):
    raise ValueError("the async view failed")


@csrf_exempt
@sensitive_post_parameters("password", "maiden_name")
def login(request):
    return JsonResponse({"user": request.POST.get("username")})


@csrf_exempt
@sensitive_post_parameters()
def login_all(request):
    return JsonResponse({"fields": sorted(request.POST)})


@csrf_exempt
def log_out(request):
    from django.contrib.auth import logout

    logout(request)  # with request.user AuthenticationMiddleware's lazy object, as in any project
    return HttpResponse("bye")


def ignores_body(request):
    return HttpResponse("ok", content_type="text/plain")


def binary(request):
    return HttpResponse(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, content_type="image/png")


def big_text(request):
    return HttpResponse("x " * 100_000, content_type="text/plain")


def chunked_text(request):
    response = HttpResponse(content_type="application/json")
    for piece in ('{"a": ', '"' + "y" * 100 + '"', "}"):
        response.write(piece)
    return response


def whoami(request):
    return HttpResponse("ok", content_type="text/plain")


async def async_echo(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data}, status=201)


async def async_whoami(request):
    return HttpResponse("ok", content_type="text/plain")


class UnreadableUser:
    """A user object whose ``is_authenticated`` raises: the audit cannot tell who acted."""

    @property
    def is_authenticated(self):
        raise RuntimeError("user backend is down")


def unreadable(request):
    request.user = UnreadableUser()
    return HttpResponse("still fine", content_type="text/plain")


def sets_cookie(request):
    response = HttpResponse("ok", content_type="text/plain")
    response.set_cookie("sessionid", "s3cr3t-session-value")
    return response


def health(request):
    return HttpResponse("up", content_type="text/plain")


urlpatterns = [
    path("echo/", echo_json),
    path("authors/", authors),
    path("authors/<int:pk>/", author_detail),
    path("upload/", upload),
    path("read-stream/", read_stream),
    path("stream/", stream),
    path("async-stream/", async_stream),
    path("boom/", boom),
    path("async-boom/", async_boom),
    path("login/", login),
    path("login-all/", login_all),
    path("logout/", log_out),
    path("ignores-body/", ignores_body),
    path("binary/", binary),
    path("big-text/", big_text),
    path("chunked-text/", chunked_text),
    path("whoami/", whoami),
    path("async-echo/", async_echo),
    path("async-whoami/", async_whoami),
    path("unreadable/", unreadable),
    path("sets-cookie/", sets_cookie),
    path("health/", health),
]
